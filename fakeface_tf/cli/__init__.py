"""`fakeface` command line: one subcommand per stage of the pipeline.

The library has no argparse (timm's rule): each command group is a module here that exposes,
per command, `add_<command>_arguments(parser)` and `run_<command>(args) -> int` (dashes become
underscores). Only the chosen command's module is imported, so `fakeface --help` never loads
TensorFlow.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import sys

from fakeface_tf.core import logs
from fakeface_tf.core.errors import FakefaceError

# name -> (command group module, one-line help)
COMMANDS = {
    "preprocess": ("fakeface_tf.cli.preprocess", "find and crop faces (224 px RGB, as the recipe) into sharded TFRecords"),
    "train": ("fakeface_tf.cli.train", "train a model from a YAML config into an isolated run folder"),
    "ensemble": ("fakeface_tf.cli.experiments", "average the logits of several runs into one model"),
    "runs": ("fakeface_tf.cli.experiments", "compare run folders side by side"),
    "track-import": ("fakeface_tf.cli.experiments", "mirror run folders into MLflow (runs/mlflow.db)"),
    "register": ("fakeface_tf.cli.experiments", "register a model folder in MLflow's model registry (serve shows its version)"),
    "tune": ("fakeface_tf.cli.experiments", "KerasTuner hyperparameter search; each trial is a run folder"),
    "crossval": ("fakeface_tf.cli.experiments", "k-fold CV of frozen-feature recipes (FaceRes, nsfwjs InceptionV3, fused)"),
    "evaluate": ("fakeface_tf.cli.evaluate", "metrics, plots and galleries for a model on a data set"),
    "learning-curve": ("fakeface_tf.cli.evaluate", "test accuracy and AUC against the training-set size"),
    "robustness": ("fakeface_tf.cli.evaluate", "accuracy and AUC under JPEG, resize, blur and flip"),
    "calibrate": ("fakeface_tf.cli.evaluate", "fit temperature or Platt scaling of P(fake) on the valid split"),
    "card": ("fakeface_tf.cli.evaluate", "write MODEL_CARD.md beside a model"),
    "fairness": ("fakeface_tf.cli.evaluate", "per-group error rates with confidence intervals"),
    "fairness-compare": ("fakeface_tf.cli.evaluate", "before/after fairness table of two runs"),
    "fairness-indist": ("fakeface_tf.cli.evaluate", "per-group FPR/FNR on the model's own held-out faces (estimated groups)"),
    "predict": ("fakeface_tf.cli.serve", "real face / fake face / not a face, with saliency maps"),
    "serve": ("fakeface_tf.cli.serve", "the single-page web app and its JSON API"),
    "export": ("fakeface_tf.cli.export", "a model as SavedModel, TFLite or ONNX, checked against Keras"),
    "main": ("fakeface_tf.cli.pipeline", "the end-to-end job on the sample data"),
}


# What a command that needs TensorFlow says when it is not installed (it comes from an extra).
TF_MISSING = ("{command} needs TensorFlow, which is not installed: pip install 'fakeface_tf[cpu]' "
              "(or 'fakeface_tf[gpu]' for a CUDA GPU)")


EXTRA_OF = {  # a module that only an extra installs -> that extra (pyproject.toml)
    "fastapi": "serve", "starlette": "serve", "uvicorn": "serve", "h11": "serve",
    "python_multipart": "serve", "prometheus_client": "serve", "keras_tuner": "tune",
    "mlflow": "track",
}


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's, via importlib.metadata)."""
    try:
        return importlib.metadata.version("fakeface_tf")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        from fakeface_tf import __version__

        return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakeface",
        description="Tell real face photos from StyleGAN faces, explain why, audit fairness.",
    )
    parser.add_argument("--version", action="version", version=f"fakeface {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            stem = name.replace("-", "_")
            getattr(module, f"add_{stem}_arguments")(p)
            p.set_defaults(func=getattr(module, f"run_{stem}"))
    return parser


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """The words before the first `--`, and those after it, which a subcommand hands on to
    another tool (`preprocess --runner beam -- BEAM OPTIONS`); argparse would refuse them."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def _closest(word: str) -> str | None:
    """The command a mistyped `word` most likely meant (`predcit` -> `predict`), if any is close."""
    return next(iter(difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)), None)


def main(argv: list[str] | None = None) -> int:
    logs.show()  # what library functions report goes to the console
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, passthrough = split_passthrough(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS and (close := _closest(command)):
        print(f"fakeface: error: unknown command {command!r}; did you mean {close!r}? "
              "(fakeface --help lists them)", file=sys.stderr)
        return 2
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv or argv[0] in ("-h", "--help") else 2
        if passthrough and not hasattr(args, "passthrough"):
            raise FakefaceError(f"{command} takes no arguments after --: {' '.join(passthrough)}")
        if passthrough:
            args.passthrough = passthrough
        return int(args.func(args) or 0)
    except FakefaceError as exc:
        message = " ".join(str(exc).splitlines())  # one line, whatever a message quotes
        print(f"fakeface: error: {message}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top == "tensorflow":
            print(f"fakeface: error: {TF_MISSING.format(command=command)}", file=sys.stderr)
        elif top in EXTRA_OF:
            print(f"fakeface: error: {command} needs {top}, which is not installed: "
                  f"pip install 'fakeface_tf[{EXTRA_OF[top]}]'", file=sys.stderr)
        else:
            raise
        return 2
    except KeyboardInterrupt:
        print("fakeface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
