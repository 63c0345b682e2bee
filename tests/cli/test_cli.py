"""The command line starts quietly and answers --help without loading TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakeface_tf.cli import COMMANDS, build_parser
from fakeface_tf.core.config import REPO_ROOT, data_root


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=REPO_ROOT)


@pytest.mark.slow
def test_tensorflow_starts_without_its_cpp_log_noise_but_keeps_other_stderr():
    done = _python("import sys, fakeface_tf, tensorflow; print('still here', file=sys.stderr)")
    assert done.returncode == 0
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr
    assert "still here" in done.stderr


@pytest.mark.slow
def test_tensorflow_python_logger_follows_tf_cpp_min_log_level():
    code = "import logging, fakeface_tf, tensorflow; print(logging.getLogger('tensorflow').level)"
    assert _python(code, TF_CPP_MIN_LOG_LEVEL="2").stdout.split()[-1] == "40"  # ERROR
    assert _python(code, TF_CPP_MIN_LOG_LEVEL="0").stdout.split()[-1] == "20"  # INFO


def test_package_log_lines_show_once_even_when_the_root_logger_has_a_handler():
    done = _python("import logging\nfrom fakeface_tf.core import logs\n"
                   "logging.basicConfig(level=logging.INFO)\nlogs.show()\n"
                   "logging.getLogger('fakeface_tf.training.train').info('run folder: x')")
    assert (done.stdout + done.stderr).count("run folder: x") == 1


@pytest.mark.slow
def test_subcommand_help_does_not_import_tensorflow():
    # One interpreter per command: a module imported for one must not hide another's import.
    for command in COMMANDS:
        done = _python("import sys\nfrom fakeface_tf.cli import main\n"
                       f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
                       "print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))")
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.splitlines()[-1] == "[]", command


# A missing input of every kind, each answered with exit code 2 before TensorFlow loads.
MISSING_INPUTS = {
    "train": ["train", "no-such.yaml"],
    "tune": ["tune", "no-such.yaml", "--space", "no-such-space.yaml"],
    "ensemble": ["ensemble", "runs/no-such-a", "runs/no-such-b", "--out", "{tmp}/e"],
    "evaluate model": ["evaluate", "no-such-model", "no-such-data"],
    "evaluate data": ["evaluate", "saved_models/reference", "no-such-data"],
    "robustness data": ["robustness", "saved_models/reference", "no-such-data"],
    "learning-curve data": ["learning-curve", "saved_models/reference", "--data", "no-such-data",
                            "--out", "{tmp}/lc"],
    "fairness labels": ["fairness", "saved_models/reference", "no-such.csv"],
    "fairness-compare second model": ["fairness-compare", "saved_models/reference", "no-such-run",
                                      "{data}/fairness/labels.csv", "--out", "{tmp}/fc"],
    "predict": ["predict", "no-such.jpg"],
    "preprocess": ["preprocess", "no-such-folder", "{tmp}/records"],
    "main": ["main", "--data", "no-such-folder"],
    "track-import": ["track-import", "runs/no-such-run"],
}


@pytest.mark.slow
@pytest.mark.parametrize("argv", MISSING_INPUTS.values(), ids=MISSING_INPUTS.keys())
def test_a_missing_input_is_refused_before_tensorflow_loads(argv, tmp_path):
    argv = [a.format(tmp=tmp_path, data=data_root()) for a in argv]
    done = _python("import sys\nfrom fakeface_tf.cli import main\n"
                   f"code = main({argv!r})\n"
                   "print(code, sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    assert done.stdout.splitlines()[-1] == "2 []", (done.stdout, done.stderr)
    assert done.stderr.startswith("fakeface: error: ") and "no-such" in done.stderr


LONG_COMMANDS = {  # every command with a progress bar, and an argument list it parses
    "preprocess": ["src", "out"], "train": ["config.yaml"], "tune": ["c.yaml", "--space", "s.yaml"],
    "crossval": ["records"], "evaluate": ["model", "data"],
    "learning-curve": ["run", "--data", "d", "--out", "o"],
    "robustness": ["model", "data"], "calibrate": ["model", "data"], "fairness": ["model", "labels.csv"],
    "fairness-compare": ["a", "b", "labels.csv"], "fairness-indist": ["model"], "predict": ["x.jpg"],
    "export": ["model", "--format", "tflite", "--out", "o"], "main": [],
}


@pytest.mark.parametrize("command", sorted(LONG_COMMANDS))
def test_every_long_command_hides_its_progress_with_the_same_option(command):
    parser = build_parser(command)
    args = parser.parse_args([command, *LONG_COMMANDS[command], "--no-progress"])
    assert args.no_progress is True
    assert parser.parse_args([command, *LONG_COMMANDS[command]]).no_progress is False


WITHOUT_EXTRAS = """
import sys
blocked = {"fastapi", "starlette", "uvicorn", "h11", "python_multipart", "prometheus_client",
           "keras_tuner", "jupyterlab", "ipykernel", "ipywidgets"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from fakeface_tf.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_predict_runs_on_the_core_install_and_serve_names_its_extra():
    face = sorted((data_root() / "faces" / "real").glob("*.jpg"))[0]
    run = [sys.executable, "-c", WITHOUT_EXTRAS]
    done = subprocess.run(run + ["predict", str(face)], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "real face" in done.stdout
    done = subprocess.run(run + ["serve", "--port", "0"], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)
    assert done.returncode == 2
    assert "pip install 'fakeface_tf[serve]'" in done.stderr.strip().splitlines()[-1]
