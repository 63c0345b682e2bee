"""The main job, end to end on the sample: preprocess, train, evaluate, audit, write the card.

`fakeface main` (and `scripts/main.sh`) runs it. Every stage is the same public function
the CLI subcommands and notebooks call; this module only chains them and prints a summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fakeface_tf.core.config import REPO_ROOT, data_root, load_config, output_records_dir
from fakeface_tf.core.text import format_value


def add_main_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="raw data folder (default: $FAKEFACE_DATA or ../shared/data)")
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "faceres_frozen.yaml"),
                        help="training config (default: configs/faceres_frozen.yaml, the "
                             "pretrained FaceRes backbone frozen, a linear head trained)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. training.epochs=3")
    parser.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"))
    parser.add_argument("--workers", type=int, default=None, help="preprocessing processes")
    parser.add_argument("--fairness-limit", type=int, default=None,
                        help="assess at most N fairness faces (stratified); default all")
    parser.add_argument("--skip-fairness", action="store_true")


def run_main(args: argparse.Namespace) -> int:
    started = time.time()
    root = data_root(args.data)  # before the stages load TensorFlow: a wrong path fails at once
    from fakeface_tf import preprocess
    from fakeface_tf.analysis import card, evaluate, fairness, robustness
    from fakeface_tf.data import datasets
    from fakeface_tf.data.faces import face_options
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
    options = face_options(cfg.data)
    summary = preprocess.preprocess(root / "faces", records, options, workers=args.workers)
    print(preprocess.format_summary(summary, records))
    for split in ("train", "valid", "test"):
        counts = datasets.count_examples(records, split)
        print(f"  {split:5s} pipeline: {counts.get('real', 0)} real, {counts.get('fake', 0)} fake")

    _stage(f"2/5 train {cfg.name} ({cfg.model.name}, {cfg.training.epochs} epochs)", timings)
    run_dir = train.train(cfg, runs_dir=args.runs_dir)

    _stage("3/5 evaluate on the test split (threshold chosen on validation), robustness sweep",
           timings)
    metrics = evaluate.evaluate(run_dir, records, split="test", threshold="auto",
                                save_threshold=True)  # the run's model ships with its threshold
    print(evaluate.summary(metrics))
    sweep = robustness.robustness(run_dir, records, split="test")
    print(robustness.table(sweep))

    fairness_report = None
    if not args.skip_fairness and (root / "fairness" / "labels.csv").is_file():
        _stage("4/5 fairness on the labelled real faces", timings)
        fairness_report = fairness.assess(run_dir, root / "fairness" / "labels.csv",
                                          limit=args.fairness_limit)
    else:
        _stage("4/5 fairness skipped (no fairness/labels.csv)", timings)

    _stage("5/5 card: MODEL_CARD.md beside the model", timings)
    card_path = card.write_card(run_dir)

    print(f"\nDone in {time.time() - started:.0f} s ("
          + ", ".join(f"{stage.split()[1].strip(':')} {seconds:.0f} s"
                      for stage, seconds in _durations(timings))
          + f"). Run folder: {run_dir}")
    print("test split: " + ", ".join(f"{k} {format_value(metrics.get(k))}"
                                     for k in ("accuracy", "roc_auc", "f1", "threshold")))
    print(f"evaluation plots: {metrics.get('out')}")
    print(f"robustness: {sweep.attrs.get('out')}")
    if fairness_report is not None:
        print(f"fairness report: {run_dir / 'fairness'}")
    print(f"model card: {card_path}")
    return 0


def _stage(message: str, timings: list[tuple[str, float]]) -> None:
    """Announce the next stage and note when it began."""
    timings.append((message, time.time()))
    print(f"\n== {message}", flush=True)


def _durations(timings: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """(stage, seconds) from the start times; the last stage ends now."""
    ends = [start for _, start in timings[1:]] + [time.time()]
    return [(stage, end - start) for (stage, start), end in zip(timings, ends)]
