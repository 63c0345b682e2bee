"""TensorBoard's HParams view: every run writes its settings beside its curves."""

from __future__ import annotations

import tensorflow as tf

from fakeface_tf.core.config import load_config
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.core.text import flat_config


def test_a_run_writes_its_config_as_an_hparams_session(tiny_run):
    run = RunFolder(tiny_run)
    events = sorted(run.tensorboard.glob("events.out.tfevents.*"))  # the run's own, not train/
    tags = {value.tag: value.metadata.plugin_data.plugin_name
            for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert "hparams" in tags.values()
    assert len(events) == 1  # written once


def test_the_flat_config_keeps_scalars_and_writes_the_rest_as_text(tiny_run):
    values = flat_config(load_config(RunFolder(tiny_run).config).to_dict())
    assert values["model.name"] == "baseline" and values["training.epochs"] == 2
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())
