"""The single page in Debian's headless Chromium: upload a face and a non-face, read the page;
and a face inside the model's "uncertain" band, which the page says it cannot tell."""

from __future__ import annotations

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
