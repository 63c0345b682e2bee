"""The single page in Debian's headless Chromium: upload a face and a non-face, read the page;
and a face inside the model's "uncertain" band, which the page says it cannot tell."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from banded_models import band_from, model_with_band
from conftest import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def server(tiny_keras_model):
    from fakeface_tf.serving.serve import create_app

    with live_server(create_app(tiny_keras_model)) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.console_errors = []
        page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
        page.goto(server)
        yield page
        browser.close()


def _upload(page, path: Path) -> str:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=60_000)
    page.wait_for_selector("#status[hidden]", state="attached", timeout=60_000)
    return page.inner_text("#verdict")


def _loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


@pytest.mark.slow
def test_face_shows_verdict_probability_box_and_heatmap(page, sample_root, tmp_path):
    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    assert _upload(page, face) in ("real face", "fake face")
    assert page.is_hidden("#error")
    assert "P(fake)" in page.inner_text("#prob-text")
    assert _loaded(page, "#boxed") and _loaded(page, "#heatmap")
    assert page.is_visible("#heatmap")
    page.fill("#opacity", "25")
    assert page.eval_on_selector("#heatmap", "img => img.style.opacity") == "0.25"
    page.screenshot(path=str(tmp_path / "face.png"), full_page=True)


def test_nonface_shows_not_a_face_and_no_heatmap(page, sample_root):
    nonface = sorted((sample_root / "nonface").glob("*.jpg"))[0]
    assert _upload(page, nonface) == "not a face"
    assert page.inner_text("#reason")
    assert page.is_hidden("#heat-figure") and _loaded(page, "#boxed")


def test_text_file_shows_the_error_in_words(page, tmp_path):
    note = tmp_path / "note.jpg"
    note.write_text("this is not an image\n")
    page.set_input_files("#file", str(note))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "not an image" in page.inner_text("#error")


def test_page_runs_under_its_content_security_policy(page, sample_root):
    face = sorted((sample_root / "faces" / "fake").glob("*.jpg"))[0]
    _upload(page, face)
    assert _loaded(page, "#boxed")
    assert not [text for text in page.console_errors if "Content Security Policy" in text]


def test_page_says_which_model_is_loaded_and_what_it_cannot_detect(page):
    page.wait_for_function("document.getElementById('model-info').textContent.length > 0")
    assert page.inner_text("#model-info").startswith("Model: ")
    assert "diffusion" in page.inner_text("#scope")


def test_nonface_shows_no_threshold_and_no_face_caption(page, sample_root):
    nonface = sorted((sample_root / "nonface").glob("*.jpg"))[0]
    assert _upload(page, nonface) == "not a face"
    assert "threshold" not in page.inner_text("#details")
    assert "detected face" not in page.inner_text("#boxed-caption")


@pytest.fixture(scope="module")
def uncertain_page(page, detector, sample_root, tiny_keras_model, tmp_path_factory):
    """A page on a server whose model's band holds the first real sample face's P(fake)."""
    from fakeface_tf.serving.serve import create_app

    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    p = detector.predict(face).probability
    model = model_with_band(tiny_keras_model, tmp_path_factory.mktemp("banded"), band_from(p - 0.01, p + 0.01))
    with live_server(create_app(model)) as url:
        banded = page.context.browser.new_page(viewport={"width": 1100, "height": 900})
        banded.goto(url)
        yield banded
        banded.close()


def test_face_inside_the_band_is_shown_uncertain_with_its_own_colour_and_heatmap(uncertain_page, page,
                                                                                sample_root, tmp_path):
    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    assert _upload(uncertain_page, face) == "uncertain"
    reason = uncertain_page.inner_text("#reason")
    assert reason.startswith("The detector cannot tell whether this face is real or generated")
    assert "uncertain band" in reason and "P(fake)" in reason
    assert uncertain_page.is_visible("#band-mark") and "uncertain band" in uncertain_page.inner_text("#details")
    assert "not far enough to decide" in uncertain_page.inner_text("#heat-caption")
    assert _loaded(uncertain_page, "#heatmap") and uncertain_page.is_visible("#heatmap")
    colour = "el => getComputedStyle(el).color"
    uncertain = uncertain_page.eval_on_selector("#verdict", colour)
    _upload(page, face)  # the same face on the band-less model: a real/fake verdict, no band
    assert page.eval_on_selector("#verdict", colour) != uncertain
    assert page.is_hidden("#band-mark") and page.inner_text("#reason") == ""
    uncertain_page.screenshot(path=str(tmp_path / "uncertain.png"), full_page=True)


# The score bar at a confident real, an even and a confident fake P(fake): the text shown, and the
# fill and the threshold mark measured from the DOM against the page's log-odds scale.
SCORES = (0.002, 0.5, 0.998)
SHOWN_THRESHOLD = 0.6
SCALE_END = 0.001  # app.js: the scale runs from 0.1 % to 99.9 %


def _scale_position(p: float) -> float:
    """Where P(fake) `p` lies along the bar, 0 (left) to 1: its log-odds between the ends'."""
    p = min(max(p, SCALE_END), 1 - SCALE_END)
    end = math.log((1 - SCALE_END) / SCALE_END)
    return (math.log(p / (1 - p)) + end) / (2 * end)


@pytest.fixture
def score_page(page, server):
    """A fresh page without motion (the fill's width is measured, not its transition), whose
    /api/predict answers are the server's with P(fake) and the threshold set by the test."""
    fresh = page.context.browser.new_page(viewport={"width": 1100, "height": 900},
                                          reduced_motion="reduce")
    fresh.goto(server)
    yield fresh
    fresh.close()


@pytest.fixture(scope="module")
def face_answer(server, sample_root) -> tuple[Path, dict]:
    """A sample face and the server's answer for it (the page's routes replay it, edited)."""
    import httpx

    face = sorted((sample_root / "faces" / "fake").glob("*.jpg"))[0]
    response = httpx.post(f"{server}/api/predict", files={"file": (face.name, face.read_bytes())},
                          data={"explain": "gradcam++"}, timeout=60)
    response.raise_for_status()
    return face, response.json()


@pytest.mark.slow
@pytest.mark.parametrize("probability", SCORES)
def test_score_bar_shows_the_probability_in_words_and_to_scale(score_page, face_answer, tmp_path,
                                                              probability):
    face, answer = face_answer
    verdict = "fake face" if probability >= SHOWN_THRESHOLD else "real face"
    body = {**answer, "probability": probability, "threshold": SHOWN_THRESHOLD, "verdict": verdict}
    score_page.route("**/api/predict", lambda route: route.fulfill(json=body))
    _upload(score_page, face)
    assert score_page.inner_text("#prob-text") == f"P(fake) {100 * probability:.1f}%"
    assert score_page.inner_text("#threshold-label") == f"threshold {100 * SHOWN_THRESHOLD:.1f}%"
    bar, fill, mark = (score_page.locator(s).bounding_box()
                       for s in ("#bar", "#prob-fill", "#threshold-mark"))
    assert fill["x"] == pytest.approx(bar["x"], abs=0.5)
    assert fill["width"] / bar["width"] == pytest.approx(_scale_position(probability), abs=0.01)
    assert fill["width"] >= 0.04 * bar["width"]  # 0.2 % is a bar one sees, not half a pixel
    centre = (mark["x"] + mark["width"] / 2 - bar["x"]) / bar["width"]
    assert centre == pytest.approx(_scale_position(SHOWN_THRESHOLD), abs=0.01)
    assert (fill["width"] / bar["width"] >= centre) == (probability >= SHOWN_THRESHOLD)
    assert score_page.inner_text("#ticks").split() == ["1%", "10%", "50%", "90%", "99%"]
    score_page.locator(".verdict-card").screenshot(path=str(tmp_path / f"score_bar_{probability}.png"))
    score_page.screenshot(path=str(tmp_path / f"page_{probability}.png"), full_page=True)
