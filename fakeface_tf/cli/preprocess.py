"""`fakeface preprocess SRC OUT`: the options of the preprocess stage (fakeface_tf/preprocess).

The face cut is the shipped recipe's (`config.recipe_data`: 224 px RGB, not levelled), so
`fakeface train configs/faceres.yaml --set data.path=OUT` takes the records as they are; or
the cut a training config asks for (`--config`); options given on the line override either.
"""

from __future__ import annotations

import argparse
import dataclasses

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core.config import VIEWS, load_config, recipe_data
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.text import short
from fakeface_tf.data.face_cut import FaceOptions, face_options
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


def face_cut(args: argparse.Namespace) -> FaceOptions:
    """The cut to make: --config's (else the recipe's), with the options given overriding it."""
    base = face_options(load_config(args.config).data if args.config else recipe_data())
    given = {"size": args.size, "color": args.color, "margin": args.margin, "level": args.level,
             "view": args.view, "min_face": args.min_face, "min_confidence": args.min_confidence}
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="image folder: {train,valid,test}/{real,fake}/ or real/ + fake/ "
                                    "(with --runner beam also a URL: gs://bucket/faces)")
    parser.add_argument("out", help="output folder for the TFRecord shards, manifest.csv, "
                                    "preprocess.json (with --runner beam also a URL)")
    recipe = face_options(recipe_data())
    parser.add_argument("--config", help="cut faces as this training config asks (data.image_size, "
                                         "data.color, data.margin, data.level, data.view); default: the "
                                         "shipped recipe's cut (configs/faceres.yaml)")
    parser.add_argument("--size", type=int, help=f"crop side in pixels (default {recipe.size})")
    parser.add_argument("--color", choices=("gray", "rgb"), help=f"default {recipe.color}")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores)")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"images per shard (default: about {TARGET_SHARDS} shards, "
                             f"16 to {MAX_SHARD_SIZE} images each)")
    parser.add_argument("--margin", type=float, help="border on each side of the face, fraction "
                                                     f"of its size (default {recipe.margin})")
    parser.add_argument("--min-face", type=int,
                        help=f"smallest face side in px (default {recipe.min_face})")
    parser.add_argument("--min-confidence", type=float,
                        help=f"smallest MTCNN confidence accepted (default {recipe.min_confidence})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash split (default 0)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,valid,test fractions for a real/ + fake/ folder (default 0.8,0.1,0.1)")
    parser.add_argument("--level", action=argparse.BooleanOptionalAction,
                        help="rotate faces so the eyes are level; --no-level cuts whole pixels, "
                             "keeping pixel-level traces (default: "
                             f"{'--level' if recipe.level else '--no-level'})")
    parser.add_argument("--view", choices=VIEWS,
                        help="face: the face box and its margin; image: the photo's largest "
                             "square around the face, all of a square photo (default "
                             f"{recipe.view})")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N files per split and class (seeded pick; quick trials)")
    add_progress_option(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an OUT holding other files (they are kept; files named "
                             "like preprocess's outputs are replaced) and redo every shard")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: processes on this machine (default); beam: Apache Beam, "
                             "given its pipeline options after `--` (pip install -e '.[beam]')")
    parser.set_defaults(passthrough=[])  # the words after `--` (cli.split_passthrough)


def run_preprocess(args: argparse.Namespace) -> int:
    options = face_cut(args)
    if args.runner == "beam" and args.workers:
        raise FakefaceError("--workers is for the local runner; give Beam its own after `--`, "
                            "e.g. -- --direct_num_workers=2 (docs/beam.md)")
    if args.passthrough and args.runner != "beam":
        raise FakefaceError(f"options after -- are for --runner beam: {' '.join(args.passthrough)}")
    summary = preprocess(args.src, args.out, options, workers=args.workers,
                         shard_size=args.shard_size, seed=args.seed, split=parse_split(args.split),
                         progress=progress(args), limit=args.limit, runner=args.runner,
                         pipeline_args=args.passthrough, overwrite=args.overwrite)
    print(format_summary(summary, args.out))
    return 0
