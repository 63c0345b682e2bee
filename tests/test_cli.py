"""The command line starts quietly and answers --help without loading TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from fakeface_tf.cli import COMMANDS


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_tensorflow_starts_without_its_cpp_log_noise_but_keeps_other_stderr():
    done = _python("import sys, fakeface_tf, tensorflow; print('still here', file=sys.stderr)")
    assert done.returncode == 0
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr
    assert "still here" in done.stderr


def test_subcommand_help_does_not_import_tensorflow():
    # One interpreter per command: a module imported for one must not hide another's import.
    for command in COMMANDS:
        done = _python("import sys\nfrom fakeface_tf.cli import main\n"
                       f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
                       "print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))")
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.splitlines()[-1] == "[]", command
