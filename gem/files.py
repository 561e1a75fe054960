"""The two file facts gem and the harness must agree on: a file's sha256 and
where caches live.

They sit at the bottom layer (gem knows nothing of devices; the harness may use
gem) so the artifact cache key, the manifest, the push check and the QEMU image
cache cannot each grow their own notion of either. Standard library only: the
harness imports this on every run, torch or not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (artifacts and images are large)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_root(home: Path | None = None) -> Path:
    """$GEM_HIL_CACHE, else <home>/.cache/gem-hil (home: this user's by default):
    artifacts, QEMU images and the `local` device's folder live below it,
    outside any checkout."""
    root = os.environ.get("GEM_HIL_CACHE")
    return Path(root) if root else (home or Path.home()) / ".cache" / "gem-hil"
