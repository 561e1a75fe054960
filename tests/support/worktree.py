"""A copy of this checkout's working tree, for tools that change the code to see
whether the tests notice (tests/benchmarks/plant_bugs.py, mutation.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked + untracked, minus ignored), so
    uncommitted changes count and caches, venvs and reports do not."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
