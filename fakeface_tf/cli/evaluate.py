"""The analysis commands: `evaluate`, `learning-curve`, `robustness`, `calibrate`, `card`,
`fairness` and `fairness-compare`. Each parses its options, calls one library function and
prints the result.

Each `run_*` imports its stage when it runs: those load TensorFlow, pandas and scikit-learn,
which `fakeface <command> --help` and a refused option should not wait for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.data.labelled import FORMATS

MODEL_HELP = "run folder, saved_models/ entry, .keras file or SavedModel"
DATA_HELP = "TFRecords folder, image folder with real/ and fake/, or a folder named real/ or fake/"


def threshold_arg(text: str) -> float | str:
    """A --threshold value: a number, or "auto" (picked on the validation split)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', got {text!r}")


# ------------------------------------------------------------------------------ evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("data", help=DATA_HELP)
    parser.add_argument("--out", default=None, help="output folder (default: <model>/eval-<data>-<split>)")
    parser.add_argument("--split", default="test",
                        help="split to evaluate (default: test); a flat real/ + fake/ folder is used whole")
    parser.add_argument("--threshold", type=threshold_arg, default=None,
                        help="decision threshold, or 'auto' to pick it on the valid split; written "
                             "to OUT/threshold.json (default: the model's threshold.json, else 0.5)")
    parser.add_argument("--target-fpr", type=float, default=None,
                        help="with auto: the lowest threshold whose false positive rate is at most this")
    parser.add_argument("--save-threshold", action="store_true",
                        help="also make the chosen or given threshold, and the band fitted by "
                             "--alpha, the model's own (threshold.json and conformal.json beside "
                             "the model, read by predict and serve); "
                             "without it the model folder is left as it was")
    parser.add_argument("--alpha", type=float, default=None,
                        help="fit an 'uncertain' band on the valid split at this error rate "
                             "(e.g. 0.05), written to OUT/conformal.json (default: the model's "
                             "conformal.json if it has one, else no uncertain verdicts)")
    parser.add_argument("--keep-worst", type=int, default=8, help="images per error gallery")
    add_progress_option(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import evaluate

    metrics = evaluate.evaluate(args.model, args.data, out=args.out, split=args.split,
                                threshold=args.threshold, target_fpr=args.target_fpr,
                                keep_worst=args.keep_worst, save_threshold=args.save_threshold,
                                alpha=args.alpha, progress=progress(args))
    print(evaluate.summary(metrics))
    return 0


def add_learning_curve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders trained on different data.train_fraction")
    parser.add_argument("--data", required=True, help="TFRecords folder with valid and test splits")
    parser.add_argument("--out", required=True, help="folder for learning_curve.csv and .png")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    add_progress_option(parser)


def run_learning_curve(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import learning_curve

    table = learning_curve.learning_curve(args.runs, args.data, args.out, split=args.split,
                                          progress=progress(args))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"learning curve: {Path(args.out) / learning_curve.FIGURE_FILE}")
    return 0


def add_robustness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("data", help=DATA_HELP)
    parser.add_argument("--out", default=None,
                        help="output folder (default: <model>/robustness-<data>-<split>)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    add_progress_option(parser)


def run_robustness(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import robustness

    frame = robustness.robustness(args.model, args.data, out=args.out, split=args.split,
                                  progress=progress(args))
    print(robustness.table(frame))
    print(f"table and plot in {frame.attrs['out']}")
    return 0


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("data", help="TFRecords folder with valid (to fit) and test (to measure) splits")
    parser.add_argument("--method", choices=("auto", "temperature", "platt"), default="auto",
                        help="the map written to calibration.json (default auto: the lowest "
                             "cross-validated validation log loss, raw P(fake) included, so a "
                             "map ships only if it beats the raw scores); the report measures "
                             "all, and isotonic")
    parser.add_argument("--out", default=None, help="report folder (default: <model>/calibration)")
    add_progress_option(parser)


def run_calibrate(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import calibration

    table = calibration.calibrate(args.model, args.data, method=args.method, out=args.out,
                                  progress=progress(args))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    fitted = table.attrs["calibration"]
    if fitted is None:
        print("P(fake) stays raw: no map beat it on held-out validation folds "
              "(no calibration.json beside the model)")
    else:
        print(f"calibration.json written beside the model ({fitted.describe()})")
    print(f"threshold {table.attrs['threshold']:.4f}; report in {table.attrs['out']}")
    return 0


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--write", action="store_true",
                        help="write MODEL_CARD.md into the model's folder (default: print the card)")


def run_card(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import card

    if args.write:
        print(f"model card: {card.write_card(args.model)}")
    else:
        print(card.card_text(args.model), end="")
    return 0


# ------------------------------------------------------------------------------ fairness


def add_labels_arguments(parser: argparse.ArgumentParser) -> None:
    """The labels CSV and options `fairness` and `fairness-compare` share."""
    parser.add_argument("labels_csv", help="labels CSV: file,label,age,gender,race[,pair_id]")
    parser.add_argument("--out", default=None, help="output folder (default: beside the model, "
                        "in fairness/ or, for fairness-compare, RUN_B/fairness-compare/)")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="labels CSV layout (default: fairface if it has a service_test "
                             "column and no label column, else utk)")
    parser.add_argument("--limit", type=int, default=None,
                        help="assess a stratified subsample of about N faces")
    parser.add_argument("--seed", type=int, default=0, help="subsample seed (with --limit)")
    add_progress_option(parser)


def add_fairness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    add_labels_arguments(parser)
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the model's threshold.json, else 0.5)")
    parser.add_argument("--all-rows", action="store_true",
                        help="assess every row, not only the held-out assessment part")


def run_fairness(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import fairness

    # The report's summary reaches the console through fairness.assess's log lines.
    fairness.assess(args.model, args.labels_csv, out=args.out, threshold=args.threshold,
                    limit=args.limit, seed=args.seed, labels_format=args.format,
                    all_rows=args.all_rows, progress=progress(args))
    return 0


def add_fairness_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="the model before (e.g. trained without fairness faces)")
    parser.add_argument("run_b", help="the model after")
    add_labels_arguments(parser)


def run_fairness_compare(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import fairness_compare

    table = fairness_compare.compare(args.run_a, args.run_b, args.labels_csv, out=args.out,
                                     limit=args.limit, seed=args.seed, labels_format=args.format,
                                     progress=progress(args))
    print(f"\nA = {args.run_a}\nB = {args.run_b}")
    print(fairness_compare.summary(table))
    print(f"Table: {Path(table.attrs['out']) / fairness_compare.TABLE_FILE}")
    return 0


def add_fairness_indist_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--attributes", default=None,
                        help="estimated age/gender of the reals, file paths relative to the data "
                             "root (default: DATA/faces/real_ffhq_attributes.csv)")
    parser.add_argument("--splits", default="valid,test",
                        help="held-out splits of the model's records to score (never train)")
    parser.add_argument("--extra-fakes", default="faces_extra",
                        help="a folder with fake/ scored for FNR too, under the data root or a "
                             "path; '' to skip (default: faces_extra)")
    parser.add_argument("--utkface", default="fairness/labels.csv",
                        help="UTKFace labels CSV to measure GEAR's accuracy on; '' to skip")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the model's threshold.json)")
    parser.add_argument("--out", default=None, help="output folder (default: <model>/fairness-indist)")
    add_progress_option(parser)


def run_fairness_indist(args: argparse.Namespace) -> int:
    from fakeface_tf.analysis import fairness_indist

    # The report's summary reaches the console through the library's log lines.
    fairness_indist.assess(args.model, out=args.out, attributes=args.attributes,
                           extra_fakes=args.extra_fakes or None, utkface=args.utkface or None,
                           held_out=[s for s in args.splits.split(",") if s],
                           threshold=args.threshold, progress=progress(args))
    return 0
