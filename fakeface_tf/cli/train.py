"""`fakeface train`: train a model from a YAML config into a run folder, or continue one.

The training library loads TensorFlow, so it is imported inside `run_train`, once the config
is read: `--help` and a missing or bad config answer at once, without TensorFlow.
"""

from __future__ import annotations

import argparse
import json

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core.config import load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config, e.g. configs/fast.yaml")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. --set model.dropout=0.3 optimizer.lr=1e-3")
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run folder")
    add_progress_option(parser, "--quiet")


def run_train(args: argparse.Namespace) -> int:
    if not args.resume and not args.config:
        raise FakefaceError("give a CONFIG file (e.g. configs/fast.yaml) or --resume RUN_DIR")
    cfg = None if args.resume else load_config(args.config, args.set)
    from fakeface_tf.training.train import resume, train  # loads TensorFlow: see the docstring

    if args.resume:
        run_dir = resume(args.resume, progress=progress(args))
    else:
        run_dir = train(cfg, args.runs_dir, progress=progress(args))
    if run_dir is None:  # a multi-worker run's other worker
        print("worker done: the chief wrote the run folder")
        return 0
    metrics = json.loads(RunFolder(run_dir).metrics.read_text())
    # No "run folder:" line here: training logs it when it creates the folder (and --resume was
    # given it), so it is printed once.
    print("validation: " + ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("accuracy", "auc", "f1", "loss")))
    return 0
