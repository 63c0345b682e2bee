"""`fakeface preprocess SRC OUT`: every image in SRC -> levelled face crop -> sharded TFRecords.

The stage, module by module:
- items.py: what SRC holds (the 140k layout or real/ + fake/ with a seeded hash split), every
  entry a file to cut or a manifest row saying what it is; only regular files are opened.
- shards.py: the deterministic plan (sorted files -> split -> chunks of `shard_size`), a
  `ShardTask` per shard, and cutting and writing one shard (its TFRecord, then its manifest
  part, each renamed into place, so a killed run never leaves a shard that looks finished).
- local.py: the local runner, a process pool whose workers die with the process that
  started them; beam.py: the Beam runner (an optional extra), for the same tasks and files.
- out_folder.py: OUT is preprocess's own (absent, empty or an earlier run, then resumed);
  anything else in it is refused unless `overwrite`, and even then kept.
- summary.py: manifest.csv streamed from the parts, and preprocess.json's counts.
- run.py: `preprocess()`, which checks the request, plans, picks a runner and summarises.

With `--runner beam`, SRC and OUT may also be URLs of Beam's file systems (gs://, s3://,
hdfs://...): listing, reading and every write go through the helpers of files.py, which call
Beam's FileSystems for a URL and the local file system otherwise, so both take this same code.
The command line is fakeface_tf/cli/preprocess.py.
"""

from fakeface_tf.preprocess.items import Item, find_items, hash_split, limit_items
from fakeface_tf.preprocess.run import RUNNERS, preprocess
from fakeface_tf.preprocess.shards import (
                                           CROP_BATCH,
                                           MANIFEST_FILE,
                                           MAX_SHARD_SIZE,
                                           PARTS_DIR,
                                           TARGET_SHARDS,
                                           ShardTask,
                                           plan_shards,
)
from fakeface_tf.preprocess.summary import format_summary

__all__ = ["preprocess", "format_summary", "find_items", "hash_split", "limit_items",
           "plan_shards", "Item", "ShardTask", "RUNNERS", "CROP_BATCH", "MAX_SHARD_SIZE",
           "TARGET_SHARDS", "PARTS_DIR", "MANIFEST_FILE"]
