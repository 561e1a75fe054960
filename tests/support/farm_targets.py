"""Profiles and inventories for farm tests: several `local` devices side by side.

Each gets its own name, its own work folder (two agents must not share a
lease file) and a short timed window, so a campaign of a few devices takes
seconds on this host.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.profiles import steady_local


def local_device(targets: Path, name: str, min_duration_s: float = 0.3,
                 max_duration_s: float = 2.0, python: str | None = None) -> Path:
    steady_local(targets, name, extra_run=f'python = "{python}"' if python else "")
    path = targets / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('workdir = "gem-hil"', f'workdir = "gem-hil-{name}"')
    text = re.sub(r"(?m)^min_count = \d+", "min_count = 20", text)
    text = re.sub(r"(?m)^min_duration_s = .*", f"min_duration_s = {min_duration_s}", text)
    text = re.sub(r"(?m)^max_duration_s = .*", f"max_duration_s = {max_duration_s}", text)
    path.write_text(text, encoding="utf-8")
    return targets


def inventory(path: Path, devices: list[str], farm: str = "", device_extra: str = "") -> Path:
    lines = ["[farm]", 'name = "test"', 'targets_dir = "targets"', farm, ""]
    for d in devices:
        lines += ["[[device]]", f'name = "{d}"', device_extra, ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
