"""The local runner: shard tasks in this process (one worker) or a pool of spawned processes.

Pool workers die with the process that started them (prctl on Linux, a parent check before
each write elsewhere), so a killed run leaves nothing writing behind it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys

import cv2

from fakeface_tf.preprocess.shards import ShardTask, run_shard

_progress: "mp.Queue | None" = None  # set in pool workers only
_parent_pid: int | None = None  # set in pool workers only
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the process that started it dies (even
    by SIGKILL), so no orphan goes on writing shards beside a rerun. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _exit_if_orphaned() -> None:
    """End a pool worker whose parent has gone (it died before prctl took hold, or not Linux)."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)


def _init_worker(progress_queue, threads: int) -> None:
    """Each pool process: die with the parent, quiet TF, share the CPUs fairly, report
    progress to the parent."""
    global _progress, _parent_pid
    _parent_pid = mp.parent_process().pid  # the spawning process, as for prctl
    _die_with_parent()
    _exit_if_orphaned()
    _progress = progress_queue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Here, not at the top: only pool workers set TF's threads, and importing this module (or
    # the package) must not load TensorFlow; the variable above must be set before it loads.
    import tensorflow as tf

    cv2.setNumThreads(1)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _run_in_worker(task: ShardTask) -> str:
    """A pool worker's shard: progress to the parent, and no write once the parent has gone."""
    return run_shard(task, on_batch=_progress.put, before_write=_exit_if_orphaned)


def _run_pool(tasks: list[ShardTask], workers: int, bar) -> None:
    """Run shard tasks in `workers` spawned processes, feeding the progress bar."""
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(progress_queue, threads)) as pool:
        result = pool.map_async(_run_in_worker, tasks, chunksize=1)
        while not result.ready():
            try:
                bar.update(progress_queue.get(timeout=0.2))
            except queue.Empty:
                pass
        result.get()  # re-raises a worker's exception (and the pool is terminated)
        pool.close()
        pool.join()  # workers exit cleanly, flushing their last progress messages
    while not progress_queue.empty():
        bar.update(progress_queue.get())
    progress_queue.close()
    progress_queue.join_thread()


def run_local(tasks: list[ShardTask], workers: int, bar) -> None:
    """Cut and write the shard tasks on this machine: in this process when `workers` is 1,
    else in a pool of that many processes; `bar` (tqdm) counts the images."""
    if workers == 1:
        for task in tasks:
            run_shard(task, on_batch=bar.update)
    elif tasks:
        _run_pool(tasks, workers, bar)
