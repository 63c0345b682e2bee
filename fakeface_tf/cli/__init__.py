"""`fakeface` command line: one subcommand per stage of the pipeline.

The library has no argparse (timm's rule): each command group is a module here that exposes,
per command, `add_<command>_arguments(parser)` and `run_<command>(args) -> int` (dashes become
underscores). Only the chosen command's module is imported, so `fakeface --help` never loads
TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fakeface_tf.core import logs
from fakeface_tf.core.errors import FakefaceError

# name -> (command group module, one-line help)
COMMANDS = {
    "preprocess": ("fakeface_tf.cli.preprocess", "find, level and crop faces into sharded TFRecords"),
    "train": ("fakeface_tf.cli.train", "train a model from a YAML config into an isolated run folder"),
    "ensemble": ("fakeface_tf.cli.experiments", "average the logits of several runs into one model"),
    "runs": ("fakeface_tf.cli.experiments", "compare run folders side by side"),
    "tune": ("fakeface_tf.cli.experiments", "KerasTuner hyperparameter search; each trial is a run folder"),
    "evaluate": ("fakeface_tf.cli.evaluate", "metrics, plots and galleries for a model on a data set"),
    "learning-curve": ("fakeface_tf.cli.evaluate", "test accuracy and AUC against the training-set size"),
    "robustness": ("fakeface_tf.cli.evaluate", "accuracy and AUC under JPEG, resize, blur and flip"),
    "card": ("fakeface_tf.cli.evaluate", "write MODEL_CARD.md beside a model"),
    "fairness": ("fakeface_tf.cli.evaluate", "per-group error rates with confidence intervals"),
    "fairness-compare": ("fakeface_tf.cli.evaluate", "before/after fairness table of two runs"),
    "predict": ("fakeface_tf.cli.serve", "real face / fake face / not a face, with saliency maps"),
    "serve": ("fakeface_tf.cli.serve", "the single-page web app and its JSON API"),
    "main": ("fakeface_tf.cli.pipeline", "the end-to-end job on the sample data"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakeface",
        description="Tell real face photos from StyleGAN faces, explain why, audit fairness.",
    )
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


def main(argv: list[str] | None = None) -> int:
    logs.show()  # what library functions report goes to the console
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, passthrough = split_passthrough(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
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
    except KeyboardInterrupt:
        print("fakeface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
