"""`fakeface preprocess --runner beam`: the local runner's shards, cut and written on Apache Beam.

Only the execution moves. The driver lists, splits and plans the shards
(items.py's `find_items`, `hash_split`; shards.py's `plan_shards`), the workers cut faces with
`faces.crop_files` and write each shard with `shards.write_shard`, and once the pipeline
has finished the driver merges the manifest parts into manifest.csv and preprocess.json, all
exactly as the local runner does: run.py's `preprocess` calls `run_shards` in place of its
process pool (local.py).

Batches are the local runner's own, not `beam.BatchElements`'. MTCNN's answer for an image
depends on which images share its batch (on 32 sample faces: boxes move by up to 7.6 px
between batches of 1 and of 16, and 3 of 32 faces change between one batch of 32 and two of
16), and BatchElements picks batch sizes and members per bundle at run time, so its records
would differ from the local runner's and from one run to the next. Each element here is one
batch that `shards.run_shard` would cut (CROP_BATCH consecutive images of one shard):
MTCNN still sees 16 images per call, and every face is cut from the same batch as locally.

SRC and OUT are either local paths, the same on the launcher and on every worker (one machine,
or a shared file system), or URLs of Beam's file systems (gs://, s3://, hdfs://, ...), which
is what Dataflow's workers share. A URL takes the same code as a path: files.py's helpers call
Beam's `FileSystems` for a URL (listing SRC with `match`, reading each image with `open`,
uploading each shard and manifest part to a temp object renamed over its final name) and the
local file system otherwise. The file system classes that serve SRC and OUT go to the workers
in `--beam_plugins`, so one registered by the launcher's own code is there on every worker.
apache_beam is imported only here and in files.py's URL branch, when `--runner beam` is asked
for: it is an optional extra, so run.py imports this module only then.
"""

from __future__ import annotations

import logging
import os
import time

import cv2

from fakeface_tf.core import files
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.faces import FaceCrop, FaceOptions, crop_files, mtcnn_detector
from fakeface_tf.preprocess.items import Item
from fakeface_tf.preprocess.shards import CROP_BATCH, ShardTask, shard_outputs, write_shard

try:  # apache_beam is an optional extra: this module is imported only for --runner beam
    import apache_beam as beam
    from apache_beam.io.filesystem import FileSystem
    from apache_beam.metrics import Metrics, MetricsFilter
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
    )
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
except ImportError as exc:  # the rest of the package works without Beam
    raise FakefaceError(f"--runner beam needs Apache Beam ({exc}); install it with: "
                        "pip install -e '.[beam]'") from None

# Each applies unless the flag is given after `--`. Beam's default DirectRunner would first try
# to download its Prism runner; FnApiRunner is the DirectRunner's own engine, here one worker
# process per core. The direct_* flags mean nothing to other runners.
DEFAULTS = {"--runner": "FnApiRunner", "--direct_running_mode": "multi_processing",
            "--direct_num_workers": "0", "--default_sdk_harness_log_level": "WARNING"}
DIRECT_RUNNERS = {"directrunner", "fnapirunner", "switchingdirectrunner", "direct"}
_log = logging.getLogger(__name__)


def shard_batches(tasks: list[ShardTask]) -> list[tuple[str, int, list[Item]]]:
    """(shard name, first position, items) for every batch that run_shard would cut."""
    return [(task.name, start, list(task.items[start:start + CROP_BATCH]))
            for task in tasks for start in range(0, len(task.items), CROP_BATCH)]


def crop_batch(items: list[Item], options: FaceOptions, detector) -> list[FaceCrop]:
    """crop_files on one batch; an image that still makes it raise alone becomes a manifest row.

    crop_files already turns an undecodable file into an `unreadable` crop; this catches the
    rest (a decoder or MTCNN bug on one odd image), so one image never fails its bundle. A
    FakefaceError is the run's, not an image's (a worker without the file system of SRC's
    URL): it fails the bundle, so the job stops with it instead of marking every image.
    """
    paths = [item.path for item in items]
    try:
        return crop_files(paths, options, batch_size=CROP_BATCH, progress=False,
                          detector=detector)
    except FakefaceError:
        raise
    except Exception:  # noqa: BLE001 - find the image that raises, keep the others
        _log.exception("a batch of %d images failed; cutting them one at a time", len(paths))
    crops = []
    for path in paths:
        try:
            crops.extend(crop_files([path], options, progress=False, detector=detector))
        except Exception as exc:  # noqa: BLE001 - any failure of one image is its manifest row
            crops.append(FaceCrop("unreadable", f"{path}: cannot be processed "
                                  f"({type(exc).__name__}: {exc})"))
    return crops


class CutFaces(beam.DoFn):
    """A batch -> (shard, (position, serialized examples, manifest rows)); one MTCNN per worker."""

    def __init__(self, options: FaceOptions, threads: int | None = None):
        self.options = options
        self.threads = threads  # TF threads per worker process; None leaves TF's default
        self.detector = None
        self.setup_ms = None

    def setup(self):
        """Build MTCNN once per worker process, and share this machine's cores between workers."""
        started = time.perf_counter()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Here, not at the top: TensorFlow loads in the workers only (the driver never needs
        # it), after the variable above.
        import tensorflow as tf

        cv2.setNumThreads(1)
        if self.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
                tf.config.threading.set_inter_op_parallelism_threads(self.threads)
            except RuntimeError:  # TF already running in this process (in_memory mode)
                pass
        self.detector = mtcnn_detector()
        self.setup_ms = int((time.perf_counter() - started) * 1000)

    def process(self, batch):
        started = time.perf_counter()
        if self.setup_ms is not None:  # metrics count only inside a bundle, not in setup()
            Metrics.distribution("fakeface", "setup_ms").update(self.setup_ms)
            self.setup_ms = None
        name, start, items = batch
        crops = crop_batch(items, self.options, self.detector)
        examples, rows = shard_outputs(items, crops, name)
        for row in rows:
            Metrics.counter("fakeface", row["status"]).inc()
        _took("cut", started)
        yield name, (start, examples, rows)


def _took(stage: str, started: float) -> None:
    """Report a stage's milliseconds to the runner (summed up by `stage_seconds`)."""
    Metrics.distribution("fakeface", f"{stage}_ms").update(int((time.perf_counter() - started) * 1000))


def write_batches(shard: tuple, out: str) -> str:
    """Write one shard, (name, its batches), in the local runner's order.

    No duplicate records when a worker dies and the runner retries its bundle: GroupByKey
    hands all the batches of a shard, and nothing else, to one call, so each shard file has
    exactly one writer at a time and its content is fixed by the plan (batches sorted by
    position, each cut from the same images). `write_shard` writes the TFRecord to a temp name
    of its own (files.replacing: one per process), flushes it and renames it over the final
    name, then does the same for the manifest part. A crash before a rename leaves no shard,
    only a temp file that a later run clears; a retried attempt renames a complete copy of the
    same records over the first. Records are never appended, so no retry can add any, and a
    shard counts as done only once both renames happened (the driver reads every part).

    OUT on cloud storage (a URL) keeps all of that: the TFRecord is written to a local temp
    file, uploaded to a temp object with a random name beside the shard (an object is visible
    only once its upload is complete, and two attempts never share a temp name, even from
    machines whose pids collide), then renamed over the shard name (GCS and S3: a server-side
    copy that publishes the whole object at once, then a delete). A worker that dies mid-upload
    leaves at most a `.NAME.HEX.tmp` object, never a torn or extra shard; a retry replaces the
    shard with an identical one.
    """
    started = time.perf_counter()
    name, batches = shard
    ordered = sorted(batches, key=lambda batch: batch[0])
    examples = [example for _, batch_examples, _ in ordered for example in batch_examples]
    rows = [row for _, _, batch_rows in ordered for row in batch_rows]
    write_shard(out, name, examples, rows)
    _took("write", started)
    return name


def file_system_plugins(paths) -> list[str]:
    """The import paths of the Beam file systems serving the URLs among `paths` (local paths
    need none). Handed to the workers as --beam_plugins, they are imported before any bundle
    runs, so a file system defined outside Beam (a module of the launcher's) serves the
    workers too; the DataflowRunner adds every plugin itself, the FnApiRunner's worker
    processes and the portable runners' workers only those they are told of."""
    schemes = {files.scheme(path) for path in paths} - {None}
    return sorted({f"{fs.__module__}.{fs.__name__}" for fs in FileSystem.get_all_subclasses()
                   if fs.scheme() in schemes})


def pipeline_options(pipeline_args, paths=()) -> tuple[PipelineOptions, int | None]:
    """Beam's options from the words after `--` and DEFAULTS (and the file systems of the URLs
    among `paths`, `file_system_plugins`), and the TF threads per worker process when the
    workers share this machine (a DirectRunner)."""
    args = list(pipeline_args or ())
    given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    options = PipelineOptions([f"{flag}={value}" for flag, value in DEFAULTS.items()
                               if flag not in given] + args)
    plugins = file_system_plugins(paths)
    if plugins:
        setup = options.view_as(SetupOptions)
        setup.beam_plugins = sorted({*(setup.beam_plugins or ()), *plugins})
    runner = options.view_as(StandardOptions).runner or StandardOptions.DEFAULT_RUNNER
    direct = options.view_as(DirectOptions)
    if str(runner).lower() not in DIRECT_RUNNERS or direct.direct_running_mode == "in_memory":
        return options, None
    cores = os.cpu_count() or 1
    return options, max(1, cores // (direct.direct_num_workers or cores))


def stage_seconds(result) -> dict:
    """Worker seconds per stage (MTCNN setup, cutting, writing) summed over workers, and how
    many times each ran; {} from a runner that reports no metrics."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace("fakeface"))["distributions"]
    except Exception:  # noqa: BLE001 - metrics are a report, never a reason to fail the run
        return {}
    stages: dict = {}
    for metric in found:
        value = metric.committed or metric.attempted
        stage = metric.key.metric.name.removesuffix("_ms")
        stages[f"{stage}_s"] = round(stages.get(f"{stage}_s", 0) + value.sum / 1000, 2)
        stages[f"{stage}_calls"] = stages.get(f"{stage}_calls", 0) + value.count
    return dict(sorted(stages.items()))


def direct_runner(options: PipelineOptions):
    """Beam's FnApiRunner handed the pipeline options, as its DirectRunner builds it (so worker
    processes get them too, the log level included); None for any other --runner."""
    if str(options.view_as(StandardOptions).runner).lower() != "fnapirunner":
        return None
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def run_shards(tasks: list[ShardTask], pipeline_args=()) -> dict:
    """Cut and write preprocess's shard tasks on Beam; returns `stage_seconds`."""
    if not tasks:
        return {}
    out, options = tasks[0].out, tasks[0].options
    beam_options, threads = pipeline_options(pipeline_args, [out, tasks[0].items[0].path])
    pipeline = beam.Pipeline(runner=direct_runner(beam_options), options=beam_options)
    (pipeline
     | "Plan batches" >> beam.Create(shard_batches(tasks))  # Create spreads them over workers
     | "Cut faces" >> beam.ParDo(CutFaces(options, threads))
     | "Group by shard" >> beam.GroupByKey()
     | "Write shards" >> beam.Map(write_batches, out))
    result = pipeline.run()
    result.wait_until_finish()  # raises if the job failed
    return stage_seconds(result)
