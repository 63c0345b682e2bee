"""A misspelled subcommand gets the command it most likely meant, in one line."""

from __future__ import annotations

import pytest

from fakeface_tf.cli import main


@pytest.mark.parametrize("typed, meant", [("predcit", "predict"), ("evalute", "evaluate"),
                                          ("fairnes-compare", "fairness-compare"), ("trian", "train")])
def test_misspelled_command_suggests_the_closest(typed, meant, capsys):
    assert main([typed, "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fakeface: error: unknown command '{typed}'; did you mean '{meant}'?")
    assert len(err.strip().splitlines()) == 1


def test_word_like_no_command_gets_the_list_of_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["zzzz"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "invalid choice: 'zzzz'" in err and "predict" in err
