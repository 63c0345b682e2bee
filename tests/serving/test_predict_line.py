"""`fakeface predict`'s line per image: the eye-levelling angle only when a face was turned."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeface_tf.serving.predict import describe

RECORD = {"verdict": "fake face", "probability": 0.9871, "threshold": 0.598, "band": None}


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.0])
def test_unturned_face_line_ends_without_an_angle(angle):
    line = describe(Path("a.jpg"), {**RECORD, "angle": angle})
    assert line == "a.jpg: fake face (P(fake)=0.987, threshold 0.598)"


def test_turned_face_line_says_the_eyes_were_levelled_and_by_how_much():
    line = describe(Path("a.jpg"), {**RECORD, "angle": -12.34})
    assert line == "a.jpg: fake face (P(fake)=0.987, threshold 0.598, eyes levelled by -12.3 deg)"


def test_uncertain_line_gives_the_band_without_an_angle():
    record = {**RECORD, "verdict": "uncertain", "angle": 0.0, "band": {"low": 0.4, "high": 0.99}}
    assert describe(Path("a.jpg"), record) == ("a.jpg: uncertain, the detector cannot tell "
                                               "(P(fake)=0.987 lies in its uncertain band 0.400-0.990)")
