"""The callbacks of a training run (training/callbacks.py) on a tiny Keras model: the best and
last checkpoints, state.json, the history with its learning rate, resuming and early stopping."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core.config import TrainingConfig
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.training.callbacks import training_callbacks

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("float32")  # 64 examples / batch 16: 4 steps an epoch


def tiny_model(lr: float = 0.01) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    prob = keras.layers.Dense(1, activation="sigmoid", name="prob")(hidden)
    model = keras.Model(inputs, prob)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


class ScriptedAuc(keras.callbacks.Callback):
    """Sets each epoch's val_auc to a scripted value (run before the run's callbacks, which see
    the same logs) and keeps the model's weights of every epoch."""

    def __init__(self, values):
        super().__init__()
        self.values, self.weights = values, []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_auc"] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def fit(model, run: RunFolder, state: dict, epochs: int, initial_epoch: int = 0, first=(),
        fitted: keras.Model | None = None, early_stopping: int = 0):
    """Keras `fit` of `fitted` (default: `model`) with the run's callbacks after `first`."""
    callbacks = list(first) + training_callbacks(run, TrainingConfig(early_stopping=early_stopping),
                                                 state, model)
    (fitted or model).fit(X, Y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch,
                          validation_data=(X, Y), callbacks=callbacks, shuffle=False, verbose=0)


def assert_weights_equal(path, expected):
    for a, b in zip(keras.models.load_model(path).get_weights(), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_best_keeps_the_epoch_of_highest_val_auc_and_last_the_latest(tmp_path):
    run, model, scripted = RunFolder(tmp_path), tiny_model(), ScriptedAuc([0.6, 0.9, 0.7])
    fit(model, run, {}, epochs=3, first=[scripted])
    assert_weights_equal(run.best_checkpoint, scripted.weights[1])
    assert_weights_equal(run.last_checkpoint, scripted.weights[2])
    last = keras.models.load_model(run.last_checkpoint)
    assert int(last.optimizer.iterations) == 3 * 4  # its optimizer state, to resume from
    assert not [p for p in run.checkpoints.iterdir() if p.name not in ("best.keras", "last.keras")]


def test_state_records_epochs_done_the_best_val_auc_and_the_time_spent(tmp_path):
    run, scripted = RunFolder(tmp_path), ScriptedAuc([0.6, 0.9, 0.7])
    fit(tiny_model(), run, {"train_seconds": 100.0}, epochs=3, first=[scripted])
    state = json.loads(run.state.read_text())
    assert state["epochs_done"] == 3 and state["best_val_auc"] == pytest.approx(0.9)
    assert state["finished"] is False
    assert 100.0 <= state["train_seconds"] < 100.0 + 60  # the time before a resume counts on


def test_history_has_a_row_per_epoch_with_the_learning_rate(tmp_path):
    run, scripted = RunFolder(tmp_path), ScriptedAuc([0.6, 0.9, 0.7])
    fit(tiny_model(lr=0.01), run, {}, epochs=3, first=[scripted])
    history = pd.read_csv(run.history)
    assert history["epoch"].tolist() == [0, 1, 2]
    assert history["val_auc"].tolist() == pytest.approx([0.6, 0.9, 0.7])
    assert history["lr"].tolist() == pytest.approx([0.01] * 3)
    assert {"loss", "auc", "val_loss"} <= set(history)
    assert (run.path / "tensorboard").is_dir()


def test_a_resumed_fit_appends_to_the_history_and_must_beat_the_best_so_far(tmp_path):
    run, model = RunFolder(tmp_path), tiny_model()
    first = ScriptedAuc([0.6, 0.9])
    fit(model, run, {}, epochs=2, first=[first])
    state = json.loads(run.state.read_text())
    resumed = ScriptedAuc([None, None, 0.8, 0.95])
    fit(model, run, state, epochs=3, initial_epoch=2, first=[resumed])
    history = pd.read_csv(run.history)  # one header, the epochs in order
    assert history["epoch"].tolist() == [0, 1, 2]
    assert history["val_auc"].tolist() == pytest.approx([0.6, 0.9, 0.8])
    assert_weights_equal(run.best_checkpoint, first.weights[1])  # 0.8 does not beat 0.9
    assert json.loads(run.state.read_text())["epochs_done"] == 3
    fit(model, run, json.loads(run.state.read_text()), epochs=4, initial_epoch=3, first=[resumed])
    assert_weights_equal(run.best_checkpoint, resumed.weights[-1])  # 0.95 does


def test_checkpoints_hold_the_whole_model_while_only_its_rest_is_fitted(tmp_path):
    run, model = RunFolder(tmp_path), tiny_model()
    model.get_layer("hidden").trainable = False
    rest = keras.Model(model.get_layer("hidden").output, model.output)
    rest.compile(optimizer=model.optimizer, loss=model.loss,
                 metrics=[keras.metrics.AUC(name="auc")])
    hidden = model.get_layer("hidden")(X)
    callbacks = training_callbacks(run, TrainingConfig(), {}, model)
    rest.fit(hidden, Y, batch_size=16, epochs=1, validation_data=(hidden, Y),
             callbacks=callbacks, verbose=0)
    for path in (run.best_checkpoint, run.last_checkpoint):
        saved = keras.models.load_model(path)
        assert saved.input_shape == (None, 4)  # the whole model, images in
        assert_weights_equal(path, model.get_weights())


def test_early_stopping_ends_the_fit_after_patience_epochs_without_a_better_val_auc(tmp_path):
    run = RunFolder(tmp_path)
    fit(tiny_model(), run, {}, epochs=10, first=[ScriptedAuc([0.9, 0.8, 0.8, 0.99])],
        early_stopping=2)
    assert pd.read_csv(run.history)["epoch"].tolist() == [0, 1, 2]
    assert json.loads(run.state.read_text())["epochs_done"] == 3


def test_progress_off_a_terminal_is_logged_per_epoch_and_between_steps(monkeypatch, caplog):
    from fakeface_tf.core import logs
    from fakeface_tf.training import callbacks, runtime

    monkeypatch.setattr(logs, "PROGRESS_SECONDS", 0.0)  # every step reports
    assert runtime.verbosity(True) == 0  # pytest's captured stdout is no terminal
    (logger,) = callbacks.progress_callbacks(True)
    assert callbacks.progress_callbacks(False) == []
    caplog.set_level("INFO", logger="fakeface_tf")
    tiny_model().fit(X, Y, validation_data=(X, Y), batch_size=16, epochs=2, verbose=0,
                     callbacks=[logger])
    lines = caplog.messages
    assert "epoch 1/2: 4 / 4 steps" in " ".join(lines)
    assert any(m.startswith("epoch 2/2 validation: 4 / ? steps") for m in lines)
    ends = [m for m in lines if m.startswith("epoch ") and " s, " in m and "loss " in m]
    assert len(ends) == 2 and "val_auc" in ends[-1]
