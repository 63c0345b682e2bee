"""The command line starts quietly and answers --help without loading TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_tensorflow_starts_without_its_cpp_log_noise_but_keeps_other_stderr():
    done = _python("import sys, fakeface_tf, tensorflow; print('still here', file=sys.stderr)")
    assert done.returncode == 0
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr
    assert "still here" in done.stderr


def test_subcommand_help_does_not_import_tensorflow():
    for command in ("predict", "serve", "preprocess", "evaluate"):
        done = _python("import sys\nfrom fakeface_tf.cli import main\n"
                       f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
                       "print('tensorflow' in sys.modules)")
        assert done.stdout.splitlines()[-1] == "False", command
