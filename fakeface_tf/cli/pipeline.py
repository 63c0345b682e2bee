"""The main job, end to end on the sample: preprocess, train, evaluate, audit, write the card.

`fakeface main` (and `scripts/main.sh`) runs it. Every stage is the same public function
the CLI subcommands and notebooks call; this module only chains them and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core.config import data_root, load_config, output_records_dir, work_root
from fakeface_tf.core.text import format_value


def add_main_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="raw data folder (default: $FAKEFACE_DATA or ../shared/data)")
    parser.add_argument("--config", default="configs/faceres_frozen.yaml",
                        help="training config (default: configs/faceres_frozen.yaml, the "
                             "pretrained FaceRes backbone frozen, a linear head trained)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. training.epochs=3")
    parser.add_argument("--runs-dir", default=str(work_root() / "runs"))
    parser.add_argument("--workers", type=int, default=None, help="preprocessing processes")
    parser.add_argument("--fairness-limit", type=int, default=None,
                        help="assess at most N fairness faces (stratified); default all")
    parser.add_argument("--skip-fairness", action="store_true")
    add_progress_option(parser)


def run_main(args: argparse.Namespace) -> int:
    started = time.time()
    root = data_root(args.data)  # before the stages load TensorFlow: a wrong path fails at once
    from fakeface_tf.analysis import card, fairness, robustness
    from fakeface_tf.training import train

    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.root={root}")
    cfg = load_config(args.config, overrides)
    records = output_records_dir(cfg.data.path)
    if not Path(cfg.data.path).is_absolute():
        cfg.data.path = str(records)

    timings: list[tuple[str, float]] = []  # (stage, start time)
    _stage(f"1/5 preprocess {root / 'faces'} -> {records}", timings)
    _preprocess(cfg, root / "faces", records, args.workers, progress(args))

    _stage(f"2/5 train {cfg.name} ({cfg.model.name}, {cfg.training.epochs} epochs)", timings)
    published_dir = Path(args.runs_dir).resolve().parent / "saved_models"  # as `fakeface train`
    run_dir = train.train(cfg, runs_dir=args.runs_dir, saved_models_dir=published_dir,
                          progress=progress(args))

    _stage("3/5 evaluate on the test split (threshold chosen on validation), robustness sweep",
           timings)
    metrics, model_dir = _evaluate_and_publish(run_dir, records, published_dir, progress(args))
    sweep = robustness.robustness(run_dir, records, split="test", progress=progress(args))
    print(robustness.table(sweep))

    fairness_report = None
    if not args.skip_fairness and (root / "fairness" / "labels.csv").is_file():
        _stage("4/5 fairness on the labelled real faces", timings)
        fairness_report = fairness.assess(run_dir, root / "fairness" / "labels.csv",
                                          limit=args.fairness_limit, progress=progress(args))
    else:
        _stage("4/5 fairness skipped (no fairness/labels.csv)", timings)

    _stage("5/5 card: MODEL_CARD.md beside the model", timings)
    card_path = card.write_card(run_dir)

    print(f"\nDone in {time.time() - started:.0f} s ("
          + ", ".join(f"{stage.split()[1].strip(':')} {seconds:.0f} s"
                      for stage, seconds in _durations(timings)) + ")")
    print("test split: " + ", ".join(f"{k} {format_value(metrics.get(k))}"
                                     for k in ("accuracy", "roc_auc", "f1", "threshold")))
    print(f"evaluation plots: {metrics.get('out')}")
    print(f"robustness: {sweep.attrs.get('out')}")
    if fairness_report is not None:
        print(f"fairness report: {run_dir / 'fairness'}")
    print(f"model card: {card_path}")
    print(_commands(model_dir, records))
    return 0


def _evaluate_and_publish(run_dir: Path, records: Path, published_dir: Path,
                          show: bool = True) -> tuple[dict, Path]:
    """Evaluate on the test split with the threshold (and, given enough validation faces, the
    uncertain band) fitted on validation and saved beside the model; publish it with them."""
    from fakeface_tf.analysis import evaluate  # loads TensorFlow, like the stages in run_main
    from fakeface_tf.analysis.conformal import ALPHA, min_calibration
    from fakeface_tf.core.run_folder import RunFolder
    from fakeface_tf.data.datasets import count_examples
    from fakeface_tf.training import finalise

    valid_faces = sum(count_examples(records, "valid").values())
    alpha = ALPHA if valid_faces >= min_calibration(ALPHA) else None
    if alpha is None:
        print(f"no uncertain band: {valid_faces} validation faces, a band at alpha {ALPHA} "
              f"needs {min_calibration(ALPHA)}")
    metrics = evaluate.evaluate(run_dir, records, split="test", threshold="auto", alpha=alpha,
                                save_threshold=True, progress=show)
    print(evaluate.summary(metrics))
    model_dir = finalise.publish(RunFolder(run_dir), published_dir)  # now with its threshold
    print(f"published with its threshold{' and uncertain band' if alpha else ''}: {model_dir}")
    return metrics, model_dir


def _preprocess(cfg, faces: Path, records: Path, workers: int | None, show: bool = True) -> None:
    """Cut the faces of `faces` into `records` as `cfg` asks; print what each split holds."""
    from fakeface_tf import preprocess  # loads TensorFlow, like the stages in run_main
    from fakeface_tf.data import datasets
    from fakeface_tf.data.face_cut import face_options

    summary = preprocess.preprocess(faces, records, face_options(cfg.data), workers=workers,
                                    progress=show)
    print(preprocess.format_summary(summary, records))
    for split in ("train", "valid", "test"):
        counts = datasets.count_examples(records, split)
        print(f"  {split:5s} pipeline: {counts.get('real', 0)} real, {counts.get('fake', 0)} fake")


def _commands(model_dir: Path, records: Path) -> str:
    """The commands that use the published model, with its path as typed from here."""
    model, data = (shlex.quote(_shown(p)) for p in (model_dir, records))
    return "\n".join(["\nuse the model:",
                      f"  fakeface predict IMAGE --model {model}",
                      f"  fakeface serve --model {model}",
                      f"  fakeface evaluate {model} {data}"])


def _shown(path: Path) -> str:
    """`path` relative to the current folder when inside it, else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def _stage(message: str, timings: list[tuple[str, float]]) -> None:
    """Announce the next stage and note when it began."""
    timings.append((message, time.time()))
    print(f"\n== {message}", flush=True)


def _durations(timings: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """(stage, seconds) from the start times; the last stage ends now."""
    ends = [start for _, start in timings[1:]] + [time.time()]
    return [(stage, end - start) for (stage, start), end in zip(timings, ends)]
