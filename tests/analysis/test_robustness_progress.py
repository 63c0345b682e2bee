"""The robustness sweep's progress bar names the degradation being scored, and counts every
(crop, condition) it scores."""

from __future__ import annotations

from fakeface_tf.analysis import robustness


class RecordedBar:
    """A stand-in for tqdm that keeps what the sweep told it."""

    made: list["RecordedBar"] = []

    def __init__(self, total=None, desc="", **_):
        self.total, self.descriptions, self.done = total, [desc], 0
        RecordedBar.made.append(self)

    def set_description(self, desc, refresh=True):
        self.descriptions.append(desc)

    def update(self, n=1):
        self.done += n

    def close(self):
        pass


def test_each_step_is_labelled_with_its_degradation(tiny_run, tiny_records, tmp_path, monkeypatch):
    monkeypatch.setattr(robustness, "tqdm", RecordedBar)
    RecordedBar.made.clear()
    conditions = {name: robustness.CONDITIONS[name] for name in ("clean", "jpeg_q50", "hflip")}
    frame = robustness.robustness(tiny_run, tiny_records, out=tmp_path, conditions=conditions)
    (bar,) = RecordedBar.made  # one bar: the batches are read without a bar of their own
    labelled = [d for d in bar.descriptions if d != "robustness"]
    assert set(labelled) == {f"robustness {name}" for name in conditions}
    assert labelled[:3] == ["robustness clean", "robustness jpeg_q50", "robustness hflip"]
    assert bar.total == bar.done == len(conditions) * int(frame["images"].iloc[0])
