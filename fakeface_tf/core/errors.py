"""The one error type users see: a clear message, exit code 2 from the CLI."""


class FakefaceError(Exception):
    """Bad input or settings, explained in words; the CLI prints it and exits with code 2."""
