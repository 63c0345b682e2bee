"""TensorBoard's HParams view of the same runs MLflow mirrors: each run's flattened config,
written once into its tensorboard/ folder beside Keras' curves, so `tensorboard --logdir runs`
lists every run with its settings and validation AUC."""

from __future__ import annotations

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from fakeface_tf.core.config import Config
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.core.text import flat_config

MARKER = "hparams.done"  # in tensorboard/: the session is written; a resumed run keeps it


def write_hparams(cfg: Config, run: RunFolder) -> None:
    """The run's settings as an HParams session in its tensorboard/ folder (once per run:
    a resumed run keeps the first)."""
    marker = run.tensorboard / MARKER
    if marker.exists():
        return
    run.tensorboard.mkdir(parents=True, exist_ok=True)
    with tf.summary.create_file_writer(str(run.tensorboard)).as_default():
        hp.hparams(flat_config(cfg.to_dict()), trial_id=run.path.name)
    marker.touch()
