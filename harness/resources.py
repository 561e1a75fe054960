"""Where the files that ship with gem-hil live: the agent, the QEMU recipe, the profiles.

From a checkout they are the repository's own ``firmware/`` and ``targets/``
(edit them in place, see the change at once). A wheel carries the same folders
as package data under ``harness/shipped/`` (setup.py maps them there), so an
installed harness works from any folder with no checkout at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import ConfigError

_HERE = Path(__file__).resolve().parent

#: folders that travel with the package (see setup.py)
SHIPPED = ("firmware", "targets")


def shipped_dir(name: str) -> Path:
    """The checkout's folder when running from one, else the packaged copy."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with gem-hil (shipped: {SHIPPED})")
    checkout = _HERE.parent / name
    if checkout.is_dir() and (_HERE.parent / "pyproject.toml").is_file():
        return checkout
    packaged = _HERE / "shipped" / name
    if packaged.is_dir():
        return packaged
    raise ConfigError(f"gem-hil's {name}/ folder is missing: neither {checkout} nor {packaged} "
                      "exists; reinstall gem-hil (pip install gem-hil) or run from a checkout")


def agent_source() -> Path:
    """The on-device agent, pushed to every device before a run."""
    return shipped_dir("firmware") / "agent" / "gem_agent.py"


def user_targets_dir() -> Path:
    """A user's own profiles: $XDG_CONFIG_HOME/gem-hil/targets (~/.config/gem-hil/targets)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gem-hil" / "targets"


def targets_search_path(targets_dir: Path | None = None) -> list[Path]:
    """Folders searched for device profiles, first match wins.

    --targets-dir, then $GEM_HIL_TARGETS (os.pathsep-separated), then the user
    folder, then the shipped profiles: one's own profiles are added to (and may
    override by name) the shipped ones, so `local` is always there.
    """
    path: list[Path] = []
    if targets_dir is not None:
        path.append(Path(targets_dir))
    env = os.environ.get("GEM_HIL_TARGETS")
    if env:
        path += [Path(p) for p in env.split(os.pathsep) if p]
    path.append(user_targets_dir())
    path.append(shipped_dir("targets"))
    return list(dict.fromkeys(path))
