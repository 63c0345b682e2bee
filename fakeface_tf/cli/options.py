"""Options every long command shares, defined once so each spells them the same way."""

from __future__ import annotations

import argparse

NO_PROGRESS_HELP = "hide progress bars (for logs and CI)"


def add_progress_option(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """`--no-progress` (plus any older spelling in `aliases`, e.g. train's `--quiet`)."""
    parser.add_argument("--no-progress", *aliases, dest="no_progress", action="store_true",
                        help=NO_PROGRESS_HELP)


def progress(args: argparse.Namespace) -> bool:
    """Whether the command shows progress bars."""
    return not getattr(args, "no_progress", False)
