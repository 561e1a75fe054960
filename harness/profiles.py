"""Device profiles: one TOML file per device in targets/.

Adding a device means adding a file, so the loader is strict and talkative:
every error names the file, the key and what was expected, because the person
reading it is editing that file right now.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, UnknownDeviceError
from harness.resources import targets_search_path

TRANSPORTS = ("local", "ssh", "adb", "qemu")
PLATFORMS = ("linux", "android", "ios-mac", "npu")
RUNTIMES = ("onnxruntime", "litert", "coreml")

_REQUIRED = object()

#: tables a profile may carry for other modules (see DeviceProfile)
OPTIONAL_TABLES = ("sensors", "conditioning", "validity")

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a table", list: "a list"}


def profile_paths(targets_dir: Path | None = None) -> dict[str, Path]:
    """Every profile name on the search path -> its file (the first folder wins)."""
    found: dict[str, Path] = {}
    for folder in targets_search_path(targets_dir):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


class Section:
    """A TOML table that knows where it came from, for error messages."""

    def __init__(self, data: Mapping[str, Any], file: Path, name: str) -> None:
        self.data = dict(data)
        self.file = file
        self.name = name
        self._seen: set[str] = set()

    def where(self, key: str) -> str:
        prefix = f"[{self.name}] " if self.name else ""
        return f"{self.file}: {prefix}{key}"

    def get(self, key: str, typ: type, default: Any = _REQUIRED, choices: tuple | None = None,
            minimum: float | None = None) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(f"{self.where(key)}: missing; expected {_TYPE_NAMES[typ]}"
                                  + (f" (one of {', '.join(choices)})" if choices else ""))
            return default
        value = self.data[key]
        ok = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{self.where(key)}: expected {_TYPE_NAMES[typ]}, "
                              f"got {value!r} ({type(value).__name__})")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.where(key)}: {value!r} is not one of {', '.join(choices)}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: {value!r} is below the minimum {minimum}")
        return value

    def table(self, key: str, required: bool = False) -> Section:
        self._seen.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.where(key)}: missing table [{key}]")
            return Section({}, self.file, key if not self.name else f"{self.name}.{key}")
        value = self.data[key]
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where(key)}: expected a table, got {value!r}")
        return Section(value, self.file, key if not self.name else f"{self.name}.{key}")

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise ConfigError(f"{self.file}: [{self.name or 'top level'}] unknown key(s) "
                              f"{', '.join(unknown)}; known: {', '.join(sorted(self._seen))}")


@dataclass(frozen=True)
class RunSettings:
    """How the benchmark runs on this device (LoadGen-style stopping rule)."""

    # Relative to the login directory on the device (the home of the SSH user,
    # a private folder for `local`): a fixed /tmp path could be pre-created by
    # another user of the board.
    workdir: str = "gem-hil"
    python: str = "python3"
    threads: int = 1
    model: str = "tiny"
    variant: str = "int8"
    seq_len_tokens: int = 64
    warmup_count: int = 5
    min_count: int = 50
    min_duration_s: float = 1.0
    max_count: int = 2000
    max_duration_s: float = 30.0
    timeout_s: float = 600.0


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    path: Path
    description: str
    transport: str
    platform: str
    runtime: str
    emulated: bool
    hardware: dict[str, Any]
    transport_options: dict[str, Any]
    run: RunSettings
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)
    #: optional tables owned by other modules (sensors, validity, ...), kept raw
    #: here and checked by their owners, which name file and key in errors
    sensors: dict[str, Any] = field(default_factory=dict)
    conditioning: dict[str, Any] = field(default_factory=dict)
    validity: dict[str, Any] = field(default_factory=dict)

    def budgets_for(self, model: str, variant: str) -> dict[str, float]:
        """[budgets.default] overlaid with [budgets."<model>-<variant>"]."""
        merged = dict(self.budgets.get("default", {}))
        merged.update(self.budgets.get(f"{model}-{variant}", {}))
        return merged

    def transport_section(self) -> Section:
        return Section(self.transport_options, self.path, self.transport)


_RUN_FIELDS = {
    "workdir": str, "python": str, "threads": int, "model": str, "variant": str,
    "seq_len_tokens": int, "warmup_count": int, "min_count": int, "min_duration_s": float,
    "max_count": int, "max_duration_s": float, "timeout_s": float,
}


def parse_profile(path: Path) -> DeviceProfile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the syntax at that line") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    top = Section(raw, path, "")
    name = top.get("name", str)
    if name != path.stem:
        raise ConfigError(f"{top.where('name')}: {name!r} must match the file name "
                          f"{path.stem!r} (the file name is what --device takes)")
    description = top.get("description", str, "")
    transport = top.get("transport", str, choices=TRANSPORTS)
    platform = top.get("platform", str, choices=PLATFORMS)
    runtime = top.get("runtime", str, choices=RUNTIMES)
    emulated = top.get("emulated", bool, False)
    hardware = top.table("hardware").data
    top._seen.add("hardware")
    transport_options = top.table(transport).data if transport != "local" else \
        top.table("local").data
    if transport != "local" and not transport_options:
        raise ConfigError(f"{path}: transport = {transport!r} needs a [{transport}] table "
                          "with its connection settings")
    run_sec = top.table("run")
    run_kwargs = {}
    for key, typ in _RUN_FIELDS.items():
        value = run_sec.get(key, typ, None)
        if value is not None:
            run_kwargs[key] = value
    run_sec.reject_unknown()
    if transport == "local" and "python" not in run_kwargs:
        # this host is the device: the harness's own interpreter has numpy and the
        # runtime; whatever `python3` is first on PATH may not (a system python)
        run_kwargs["python"] = sys.executable
    run = RunSettings(**run_kwargs)
    _check_run(run, run_sec)
    if transport == "local" and run.python.startswith(("./", "../")):
        # a wrapper shipped beside the profiles (e.g. the qemu-user launcher)
        run = replace(run, python=str((path.parent / run.python).resolve()))
    budgets: dict[str, dict[str, float]] = {}
    bud_sec = top.table("budgets")
    from harness.budgets import check_budget_table  # local: budgets imports nothing of ours

    for variant_key in list(bud_sec.data):
        table = bud_sec.table(variant_key)
        budgets[variant_key] = check_budget_table(table)
    extra = {name: top.table(name).data for name in OPTIONAL_TABLES}
    top.reject_unknown()
    return DeviceProfile(name=name, path=path, description=description, transport=transport,
                         platform=platform, runtime=runtime, emulated=emulated,
                         hardware=dict(hardware), transport_options=dict(transport_options),
                         run=run, budgets=budgets, **extra)


def _check_run(run: RunSettings, sec: Section) -> None:
    if run.min_count > run.max_count:
        raise ConfigError(f"{sec.where('min_count')}: {run.min_count} exceeds max_count "
                          f"{run.max_count}; raise max_count or lower min_count")
    if run.min_duration_s > run.max_duration_s:
        raise ConfigError(f"{sec.where('min_duration_s')}: {run.min_duration_s} exceeds "
                          f"max_duration_s {run.max_duration_s}")
    for key in ("threads", "seq_len_tokens", "min_count", "max_count"):
        if getattr(run, key) < 1:
            raise ConfigError(f"{sec.where(key)}: must be at least 1")


def available_devices(targets_dir: Path | None = None) -> list[str]:
    return list(profile_paths(targets_dir))


def load_profile(name: str, targets_dir: Path | None = None) -> DeviceProfile:
    """The profile called name from the search path (see harness.resources)."""
    paths = profile_paths(targets_dir)
    if name not in paths:
        folders = ", ".join(str(p) for p in targets_search_path(targets_dir))
        raise UnknownDeviceError(
            f"unknown device {name!r}: no {name}.toml in {folders}. Available: "
            f"{', '.join(paths) if paths else '(none)'}; add {name}.toml to one of those "
            "folders (or pass --targets-dir DIR / set GEM_HIL_TARGETS) to define it"
        )
    return parse_profile(paths[name])


def load_all(targets_dir: Path | None = None) -> list[DeviceProfile]:
    return [load_profile(n, targets_dir) for n in available_devices(targets_dir)]
