"""`fakeface preprocess SRC OUT`: the options of the preprocess stage (fakeface_tf/preprocess)."""

from __future__ import annotations

import argparse

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.text import short
from fakeface_tf.data.faces import FaceOptions
from fakeface_tf.preprocess import MAX_SHARD_SIZE, RUNNERS, TARGET_SHARDS, format_summary, preprocess


def parse_split(text: str) -> tuple[float, float, float]:
    """--split's "train,valid,test" fractions, refused unless three that sum to 1."""
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise FakefaceError("--split expects three fractions summing to 1, e.g. 0.8,0.1,0.1; "
                            f"got {short(text)}")
    return parts


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="image folder: {train,valid,test}/{real,fake}/ or real/ + fake/ "
                                    "(with --runner beam also a URL: gs://bucket/faces)")
    parser.add_argument("out", help="output folder for the TFRecord shards, manifest.csv, "
                                    "preprocess.json (with --runner beam also a URL)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    parser.add_argument("--color", choices=("gray", "rgb"), default="gray", help="default gray")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores)")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"images per shard (default: about {TARGET_SHARDS} shards, "
                             f"16 to {MAX_SHARD_SIZE} images each)")
    parser.add_argument("--margin", type=float, default=0.2,
                        help="border on each side of the face, fraction of its size (default 0.2)")
    parser.add_argument("--min-face", type=int, default=24, help="smallest face side in px (default 24)")
    parser.add_argument("--min-confidence", type=float, default=0.9,
                        help="smallest MTCNN confidence accepted (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash split (default 0)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,valid,test fractions for a real/ + fake/ folder (default 0.8,0.1,0.1)")
    parser.add_argument("--no-level", action="store_true",
                        help="do not rotate faces level: cut whole pixels (keeps pixel-level traces)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N files per split and class (seeded pick; quick trials)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an OUT holding other files (they are kept; files named "
                             "like preprocess's outputs are replaced) and redo every shard")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: processes on this machine (default); beam: Apache Beam, "
                             "given its pipeline options after `--` (pip install -e '.[beam]')")
    parser.set_defaults(passthrough=[])  # the words after `--` (cli.split_passthrough)


def run_preprocess(args: argparse.Namespace) -> int:
    options = FaceOptions(size=args.size, color=args.color, margin=args.margin, level=not args.no_level,
                          min_face=args.min_face, min_confidence=args.min_confidence)
    if args.runner == "beam" and args.workers:
        raise FakefaceError("--workers is for the local runner; give Beam its own after `--`, "
                            "e.g. -- --direct_num_workers=2 (README: preprocessing on Beam)")
    if args.passthrough and args.runner != "beam":
        raise FakefaceError(f"options after -- are for --runner beam: {' '.join(args.passthrough)}")
    summary = preprocess(args.src, args.out, options, workers=args.workers,
                         shard_size=args.shard_size, seed=args.seed, split=parse_split(args.split),
                         progress=not args.no_progress, limit=args.limit, runner=args.runner,
                         pipeline_args=args.passthrough, overwrite=args.overwrite)
    print(format_summary(summary, args.out))
    return 0
