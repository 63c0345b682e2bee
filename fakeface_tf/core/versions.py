"""Installed versions of the packages a result depends on, recorded beside that result."""

from __future__ import annotations

import contextlib
from importlib import metadata


def package_versions(names) -> dict[str, str]:
    """{name: version} of those of `names` that are installed; the others are left out."""
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
