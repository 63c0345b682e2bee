"""`fakeface export`: a model as a SavedModel (with a `verdict` signature), TFLite or ONNX file.

The export is checked against the Keras model on sample crops before it is kept: the max
|difference| of P(fake) is printed, and an export that changes any verdict is refused.
"""

from __future__ import annotations

import argparse

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core.errors import FakefaceError

FORMATS = ("savedmodel", "tflite", "onnx")  # models/export_formats.FORMATS, without TensorFlow


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="run folder, saved_models/ entry or .keras file")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--quantize", choices=("dynamic",), default=None,
                        help="dynamic-range int8 weights (tflite only)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (absent or empty); the verdict files are copied in")
    parser.add_argument("--check", metavar="DATA", default=None,
                        help="records folder (its test split) or image folder to check the "
                             "export on (default: the model's records, else sample faces)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="check on the first N crops only")
    add_progress_option(parser)


def run_export(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise FakefaceError("--limit must be at least 1")
    from fakeface_tf.models import artifacts  # the model is found before TensorFlow loads

    artifacts.find_model(args.model)
    from fakeface_tf.models.export_check import export_model

    report = export_model(args.model, args.format, args.out, args.quantize or "none",
                          check=args.check, limit=args.limit, progress=progress(args))
    print(f"{report.format}{' (' + report.quantize + ')' if report.quantize != 'none' else ''} "
          f"-> {report.path}: {report.size_bytes / 1e6:.1f} MB")
    print(f"checked on {report.n_checked} crops of {report.source}: max |diff| P(fake) "
          f"{report.max_diff:.2g}, every verdict the same ({report.seconds:.1f} s)")
    return 0
