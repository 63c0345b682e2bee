"""The command line starts quietly and answers --help without loading TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

from fakeface_tf.cli import COMMANDS


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_tensorflow_starts_without_its_cpp_log_noise_but_keeps_other_stderr():
    done = _python("import sys, fakeface_tf, tensorflow; print('still here', file=sys.stderr)")
    assert done.returncode == 0
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr
    assert "still here" in done.stderr


def test_tensorflow_python_logger_follows_tf_cpp_min_log_level():
    code = "import logging, fakeface_tf, tensorflow; print(logging.getLogger('tensorflow').level)"
    assert _python(code, TF_CPP_MIN_LOG_LEVEL="2").stdout.split()[-1] == "40"  # ERROR
    assert _python(code, TF_CPP_MIN_LOG_LEVEL="0").stdout.split()[-1] == "20"  # INFO


def test_package_log_lines_show_once_even_when_the_root_logger_has_a_handler():
    done = _python("import logging\nfrom fakeface_tf import logs\n"
                   "logging.basicConfig(level=logging.INFO)\nlogs.show()\n"
                   "logging.getLogger('fakeface_tf.train').info('run folder: x')")
    assert (done.stdout + done.stderr).count("run folder: x") == 1


def test_subcommand_help_does_not_import_tensorflow():
    # One interpreter per command: a module imported for one must not hide another's import.
    for command in COMMANDS:
        done = _python("import sys\nfrom fakeface_tf.cli import main\n"
                       f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
                       "print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))")
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.splitlines()[-1] == "[]", command
