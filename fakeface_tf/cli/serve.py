"""`fakeface predict` and `fakeface serve`: verdicts for image files, and the web app.

predict: one line per image (or one JSON object per line with --json); a face whose P(fake)
lies in the model's "uncertain" band (conformal.json beside it) is called "uncertain". With
--explain, the heatmap overlays are saved as PNGs in --out (or the current folder). A folder
argument processes every image in it with a progress bar; predictions.csv goes to --out when
given, and without --out nothing else is written. Missing files are refused before the model loads. Unreadable
files are skipped and listed at the end (exit 1 if some, 2 if all failed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core import memory
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.serving import predict
from fakeface_tf.serving.drawing import COLORMAPS
from fakeface_tf.serving.explanations import EXPLAIN_METHODS
from fakeface_tf.serving.inference import Detector
from fakeface_tf.serving.limits import ConnectionLimits, Limits

MODEL_HELP = ("run folder, saved_models/ entry, .keras file or SavedModel (default: $FAKEFACE_MODEL, "
              "else the checkout's saved_models/reference)")
# The serve options that must be positive, as Limits and ConnectionLimits name them.
POSITIVE = ("max_upload_mb", "max_pending", "body_timeout", "request_timeout", "decode_workers",
            "decode_memory_mb", "decode_timeout", "max_batch", "header_timeout", "max_connections",
            "max_per_client")


# ------------------------------------------------------------------------------ predict


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--explain", choices=EXPLAIN_METHODS, help="save a heatmap overlay per face")
    parser.add_argument("--out", type=Path, help="folder for predictions.csv and overlays (without "
                        "it predictions.csv is not written; --explain overlays go to the current folder)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--colormap", choices=list(COLORMAPS), default="jet")
    parser.add_argument("--opacity", type=float, default=0.6, help="heatmap opacity in [0, 1]")
    add_progress_option(parser)


def run_predict(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        raise FakefaceError(f"--opacity must be within [0, 1], got {args.opacity}")
    files, any_folder = predict.expand(args.paths)
    if not files:
        raise FakefaceError(f"no images found in {', '.join(map(str, args.paths))}")
    missing = [str(path) for path in files if not path.is_file()]
    if missing:  # before the model loads: a typo should not cost seconds
        raise FakefaceError(f"file not found: {', '.join(missing)}")
    detector = Detector.load(args.model)
    out = args.out or Path.cwd()
    records, failed = [], []
    bar = tqdm(files, desc="predict", unit="img", disable=not (any_folder and progress(args)),
               file=sys.stderr)
    for path in bar:
        record = predict.predict_file(detector, path, args.explain, out, args.colormap, args.opacity)
        records.append(record)
        if record["verdict"] == "error":
            failed.append(record["error"])
            continue
        bar.write(json.dumps(record) if args.json else predict.describe(path, record), file=sys.stdout)
    if args.out:
        written = predict.write_predictions(records, out)
        print(f"wrote {written} ({len(records)} rows)", file=sys.stderr)
    for reason in failed:
        print(f"fakeface: error: {reason}", file=sys.stderr)
    if failed:
        return 2 if len(failed) == len(files) else 1
    return 0


# -------------------------------------------------------------------------------- serve


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    default = Limits()
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=default.max_upload_mb,
                        help="upload cap, answered 413 (default: %(default)s)")
    parser.add_argument("--max-pending", type=int, default=default.max_pending,
                        help="requests in flight before new ones get 503 (default: %(default)s)")
    parser.add_argument("--body-timeout", type=float, default=default.body_timeout,
                        help="seconds to receive an upload, else 408 (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=default.request_timeout,
                        help="seconds to answer a request, else 503 (default: %(default)s)")
    parser.add_argument("--decode-workers", type=int, default=default.decode_workers,
                        help="worker processes decoding uploads, so decodes at once "
                             "(default: %(default)s)")
    parser.add_argument("--decode-memory-mb", type=float, default=default.decode_memory_mb,
                        help="memory each decode worker may use, a hard cap; a decode needing more "
                             "is 413 (default: what any accepted upload needs, ~350 MB)")
    parser.add_argument("--decode-timeout", type=float, default=default.decode_timeout,
                        help="seconds one decode may take; longer: its worker is killed and the "
                             "upload gets 413 (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=default.max_batch,
                        help="images per pass through MTCNN and the model (default: %(default)s)")
    _add_connection_arguments(parser, default.connections)
    parser.add_argument("--cors", action="append", metavar="ORIGIN",
                        help="allow this origin cross-site (repeatable; CORS is off by default)")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not serve the API description (/openapi.json, /docs, /redoc)")


def _add_connection_arguments(parser: argparse.ArgumentParser, default: ConnectionLimits) -> None:
    parser.add_argument("--header-timeout", type=float, default=default.header_timeout,
                        help="seconds for a request head to arrive, else the connection is closed "
                             "(default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=default.max_connections,
                        help="open connections in all; over it, idle ones are closed, else 503 "
                             "(default: %(default)s)")
    parser.add_argument("--max-per-client", type=int, default=default.max_per_client,
                        help="open connections per client address; raise it behind a proxy "
                             "(default: %(default)s)")


def serve_limits(args: argparse.Namespace) -> Limits:
    """The server's limits from the serve options; any of them zero or negative is refused."""
    for name in POSITIVE:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise FakefaceError(f"--{name.replace('_', '-')} must be positive, got {value}")
    connections = ConnectionLimits(header_timeout=args.header_timeout, max_connections=args.max_connections,
                                   max_per_client=args.max_per_client)
    return Limits(max_upload_mb=args.max_upload_mb, max_pending=args.max_pending,
                  body_timeout=args.body_timeout, request_timeout=args.request_timeout,
                  decode_workers=args.decode_workers, decode_memory_mb=args.decode_memory_mb,
                  decode_timeout=args.decode_timeout, max_batch=args.max_batch, connections=connections)


def run_serve(args: argparse.Namespace) -> int:
    # Here, not at the top: this module also holds `predict`, whose --help and runs need no
    # web stack (FastAPI and uvicorn take a third of a second to import).
    from fakeface_tf.serving.serve import create_app, run_server

    limits = serve_limits(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # INFO: one access line per request (fakeface.serve.access), refusals, clients that left;
    # uvicorn's own loggers stay at warning (server_config), so nothing is logged twice.
    logging.getLogger("fakeface.serve").setLevel(logging.INFO)
    memory.tame_malloc()
    detector = Detector.load(args.model)
    detector.warmup(limits.max_batch)
    app = create_app(limits=limits, cors_origins=args.cors, detector=detector, docs=not args.no_docs)
    band = detector.band
    print(f"fakeface: serving {detector.model.root.name} on http://{args.host}:{args.port}/ "
          f"({limits.decode_workers} decode workers of {app.state.decoders.memory_mb:.0f} MB, "
          f"{limits.max_pending} requests at once)"
          + (f"; P(fake) in {band.low:.3f}-{band.high:.3f} is \"uncertain\"" if band else ""), flush=True)
    run_server(app, limits, args.host, args.port)
    return 0
