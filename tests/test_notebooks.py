"""The notebooks' stored outputs are the full-mode tour (scripts/notebooks.sh): every cell run,
no errors, no fast mode, no machine's folders and no TensorFlow log noise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fakeface_tf.core.config import REPO_ROOT
from fakeface_tf.core.quiet import NOISE

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
# An absolute path after a space, quote, bracket or equals sign: /work/..., /home/..., /tmp/...
ABSOLUTE_PATH = re.compile(r"(?:^|[\s\"'(=\[])/(?:[\w.-]+/)+[\w.-]*", re.MULTILINE)
OTHER_NOISE = re.compile(r"Local rendezvous|TqdmWarning|IProgress not found")


def stored_text(notebook: Path) -> list[tuple[int, str]]:
    """(cell index, text) of every stored stream, result and error output."""
    cells = json.loads(notebook.read_text())["cells"]
    texts = []
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            if "text" in output:
                texts.append((index, "".join(output["text"])))
            for mime in ("text/plain", "text/html"):
                if mime in output.get("data", {}):
                    texts.append((index, "".join(output["data"][mime])))
            if output.get("output_type") == "error":
                texts.append((index, f"ERROR {output.get('ename')}: {output.get('evalue')}"))
    return texts


def test_there_are_five_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_a_full_mode_run_of_every_cell(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), "not one top-to-bottom run: scripts/notebooks.sh"
    texts = stored_text(notebook)
    assert not [t for _, t in texts if t.startswith("ERROR")]
    assert any("fast mode: False" in t for _, t in texts)
    assert not any("fast mode: True" in t for _, t in texts)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_name_no_machine_folders_and_carry_no_log_noise(notebook):
    for index, text in stored_text(notebook):
        assert not ABSOLUTE_PATH.search(text), (index, ABSOLUTE_PATH.search(text).group())
        assert str(REPO_ROOT) not in text, index
        assert not NOISE.search(text) and not OTHER_NOISE.search(text), (index, text[:300])
