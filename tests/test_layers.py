"""The package's shape (#23): imports run down the stages, no cycles, small modules and functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from fakeface_tf.core.config import REPO_ROOT

PACKAGE = REPO_ROOT / "fakeface_tf"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
# "path" or "path:function" -> why it may be longer
LONGER = {}


def test_imports_run_down_the_layers_and_siblings_have_no_cycles():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _sizes():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        text = path.read_text()
        yield rel, len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{rel}:{node.name}", node.end_lineno - node.lineno + 1


def test_no_module_over_400_lines_and_no_function_over_60_unless_said_why():
    too_long = [f"{name} ({lines} lines)" for name, lines in _sizes() if name not in LONGER
                and lines > (MAX_FUNCTION_LINES if ":" in name else MAX_MODULE_LINES)]
    assert not too_long, "too long: " + ", ".join(too_long)


def test_library_code_never_prints_only_the_cli_does():
    printing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not printing, "print() outside fakeface_tf/cli: " + ", ".join(printing)


def test_no_argparse_outside_the_cli():
    users = [str(p.relative_to(REPO_ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
             if "cli" not in p.relative_to(PACKAGE).parts and "argparse" in p.read_text()]
    assert not users, "argparse outside fakeface_tf/cli: " + ", ".join(users)
