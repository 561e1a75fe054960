"""Device profiles: one TOML file per device in targets/.

Adding a device means adding a file, so the loader is strict and talkative:
the WHOLE profile is checked when it is loaded, before anything is built,
pushed or booted, against what the transports, platforms, runtimes and sensor
kinds registered in harness.registry. Every error names the file, the table,
the key, what was expected and how to fix it, because the person reading it
is editing that file right now.
"""

from __future__ import annotations

import posixpath
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gem.compress.spec import COMPRESSED_VARIANTS
from harness.errors import ConfigError, UnknownDeviceError
from harness.registry import Part as _Part
from harness.registry import (
    TableContext,
    is_required,
    parse_part,
    parse_table,
    registry,
    setting,
    settings_fields,
    unknown_keys_error,
)
from harness.resources import targets_search_path

_REQUIRED = object()

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a table", list: "a list"}

#: the artifact variants a GEM build offers ([run] variant, --gem-variant), over
#: every format: the precisions (int8_full: LiteRT full-integer int8, calibrated),
#: then the compressed ones (gem/compress/spec.py; docs/compression.md); which of
#: them a format has: gem.export.FORMATS (checked at load)
VARIANTS = ("fp32", "fp16", "int8", "int8_full", *COMPRESSED_VARIANTS)

#: tables every profile may carry besides the registered ones
_FREE_TABLES = ("hardware", "budgets")


def profile_paths(targets_dir: Path | None = None) -> dict[str, Path]:
    """Every profile name on the search path -> its file (the first folder wins)."""
    found: dict[str, Path] = {}
    for folder in targets_search_path(targets_dir):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


class Section:
    """A TOML table that knows where it came from (budgets use it for messages)."""

    def __init__(self, data: Mapping[str, Any], file: Path, name: str) -> None:
        self.data = dict(data)
        self.file = file
        self.name = name

    def where(self, key: str) -> str:
        prefix = f"[{self.name}] " if self.name else ""
        return f"{self.file}: {prefix}{key}"

    def get(self, key: str, typ: type, default: Any = _REQUIRED) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(f"{self.where(key)}: missing; expected {_TYPE_NAMES[typ]}")
            return default
        value = self.data[key]
        ok = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{self.where(key)}: expected {_TYPE_NAMES[typ]}, "
                              f"got {value!r} ({type(value).__name__})")
        return value


# -- the [run] table --------------------------------------------------------------

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def check_workdir(workdir: str, ctx: TableContext, key: str = "workdir",
                  home: str = "the device user's home (the local device's private folder)",
                  fix: str = 'write a folder inside the home, e.g. workdir = "gem-hil"'
                  ) -> None:
    """A workdir must stay inside the device user's home (or the local
    device's private folder): the harness creates, overwrites and cleans files
    there, so `/`, `../../etc` or an absolute path would let a profile write
    anywhere the login may. A control character (a newline, say) would split
    the remote shell command that creates it. The same holds for any other path a
    profile names inside that folder (the iOS bench app, [ios] app: ``home`` and
    ``fix`` then name that folder and the key)."""
    if not workdir.strip():
        raise ctx.error(key, f"empty; {fix}")
    bad = sorted({repr(c) for c in workdir if c in _CONTROL})
    if bad:
        raise ctx.error(key, f"{workdir!r} contains control character(s) {', '.join(bad)}; "
                             f"{fix}")
    if workdir.startswith("/"):
        raise ctx.error(key, f"{workdir!r} is an absolute path; it must be relative to {home}; "
                             f"{fix}")
    if workdir.startswith("~"):
        raise ctx.error(key, f"{workdir!r}: ~ is not expanded; the path is already relative "
                             f"to the home, so drop the leading ~/; {fix}")
    parts = workdir.split("/")
    if ".." in parts:
        raise ctx.error(key, f"{workdir!r} has a '..' component and could leave {home}; "
                             f"{fix}")
    if all(p in ("", ".") for p in parts):
        raise ctx.error(key, f"{workdir!r} is the home itself; the harness needs a folder of "
                             f"its own there; {fix}")


@registry.table("run", owner="the bench engine",
                help="How the benchmark runs on this device (LoadGen-style stopping rule).")
@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How the benchmark runs on this device (LoadGen-style stopping rule)."""

    workdir: str = setting(
        "gem-hil", help="folder for the agent and artifacts, relative to the device user's "
        "home (local: the device's private folder; ADB: /data/local/tmp); no '..', not "
        "absolute")
    python: str = setting("python3", help="interpreter on the device with the runtime "
                          "installed; for transport = \"local\" a path starting with ./ or ../ "
                          "is relative to the profile's folder")
    threads: int = setting(1, minimum=1, help="inference threads the runtime may use")
    model: str = setting("tiny", help="GEM config to benchmark (gem/config.py)")
    variant: str = setting("int8", choices=VARIANTS, help="artifact variant")
    seq_len_tokens: int = setting(64, minimum=1, help="tokens per inference")
    warmup_count: int = setting(5, minimum=0, help="untimed inferences before the timed ones")
    min_count: int = setting(50, minimum=1, help="timed inferences at least")
    min_duration_s: float = setting(1.0, minimum=0, help="timed seconds at least")
    max_count: int = setting(2000, minimum=1, help="stop after this many timed inferences")
    max_duration_s: float = setting(30.0, minimum=0, help="stop after this many timed seconds")
    sequential: bool = setting(True, help="stop as soon as every gated latency percentile is "
                               "decided (exact sequential boundaries, docs/statistics.md); "
                               "false: always sample until the minimums")
    input_pool_size: int = setting(8, minimum=1, help="different inputs the timed loop cycles "
                                   "through (one fixed input keeps the routed experts "
                                   "cache-hot)")
    timeout_s: float = setting(600.0, minimum=1, help="the whole agent run is killed after this")

    def check(self, ctx: TableContext) -> RunSettings:
        if self.min_count > self.max_count:
            raise ctx.error("min_count", f"{self.min_count} exceeds max_count {self.max_count}; "
                                         "raise max_count or lower min_count")
        if self.min_duration_s > self.max_duration_s:
            raise ctx.error("min_duration_s", f"{self.min_duration_s} exceeds max_duration_s "
                                              f"{self.max_duration_s}; raise max_duration_s")
        check_workdir(self.workdir, ctx, home=_home_of(ctx.raw.get("transport")))
        if not self.python.strip() or any(c in _CONTROL for c in self.python):
            raise ctx.error("python", f"{self.python!r} is not an interpreter path; e.g. "
                                      'python = "python3"')
        if ctx.raw.get("transport") == "local":
            if "python" not in (ctx.raw.get("run") or {}):
                # this host is the device: the harness's own interpreter has numpy and
                # the runtime; whatever `python3` is first on PATH may not (a system one)
                return replace(self, python=sys.executable)
            if self.python.startswith(("./", "../")):
                # a wrapper shipped beside the profiles (e.g. the qemu-user launcher)
                return replace(self, python=str((ctx.file.parent / self.python).resolve()))
        return self


def _home_of(transport: Any) -> str:
    """How a message names the folder relative device paths live in."""
    try:
        home = registry.get("transport", str(transport)).options.get("device_home")
    except ConfigError:
        home = None  # an unknown transport is reported on its own
    if home:
        return f"{home} (where {transport} devices keep relative paths)"
    if transport == "local":
        return "the local device's private folder ($GEM_HIL_LOCAL_HOME)"
    return "the device user's home (the login directory)"


# -- the profile's top level --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Head:
    name: str = setting(help="must equal the file name without .toml (what --device takes)",
                        example='"<file name>"')
    description: str = setting("", help="one line for `gem-hil devices` and records")
    transport: str = setting(help="how the harness reaches the device: a registered transport",
                             example='"local"')
    platform: str = setting(help="what kind of device it is: a registered platform",
                            example='"linux"')
    runtime: str = setting(help="what runs the model: a registered runtime",
                           example='"onnxruntime"')
    emulated: bool = setting(False, help="an emulator: timings are recorded, not gated")


HEAD_PART = _Part("", "the profile", _Head,
                  help="Top-level keys. Besides them a profile has [hardware] (free-form "
                       "facts), [budgets.default] / [budgets.\"<model>-<variant>\"] (metric "
                       "limits, docs/gate.md) and the tables below.")
registry.top = HEAD_PART


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
    #: the [<transport>] table as written (checked); the typed form is transport_settings
    transport_options: dict[str, Any]
    run: RunSettings
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the optional tables as written, already checked at load: only the keys the
    #: file sets (so an owner can tell "set to the default" from "not set")
    sensors: dict[str, Any] = field(default_factory=dict)
    conditioning: dict[str, Any] = field(default_factory=dict)
    validity: dict[str, Any] = field(default_factory=dict)
    #: typed settings of every table owner, by Part.id: "ssh", "run", "validity",
    #: "sensors", "sensors.android", "conditioning", ...
    settings: Mapping[str, Any] = field(default_factory=dict)

    def budgets_for(self, model: str, variant: str) -> dict[str, float]:
        """[budgets.default] overlaid with [budgets."<model>-<variant>"]."""
        merged = dict(self.budgets.get("default", {}))
        merged.update(self.budgets.get(f"{model}-{variant}", {}))
        return merged

    @property
    def transport_settings(self) -> Any:
        """The checked settings of the [<transport>] table (SshSettings, AdbSettings, ...)."""
        return self.settings[self.transport]


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the syntax at that line") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _table(raw: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} = {value!r}: expected a table [{key}]; write the "
                          f"keys under a [{key}] header")
    return value


def parse_profile(path: Path, *, check_files: bool = True) -> DeviceProfile:
    """Load and check a whole profile: every table, every key, every name.

    Order: unknown keys first (a misspelt key would otherwise surface as a
    confusing "missing" for the key it was meant to be), then the top-level
    keys, the registered names, and each table through its registered owner.
    check_files=False skips what depends on this machine rather than on the
    file (an SSH key's existence and mode): for readers that want a profile's
    budgets, such as the release gate, on a machine that never talks to the
    device.
    """
    path = Path(path)
    raw = _read(path)
    transports = {p.name: p for p in registry.plugins("transport")}
    shared = [t for t in registry.tables() if t not in transports]
    head_keys = [f for f in _Head.__dataclass_fields__]
    known = head_keys + list(_FREE_TABLES) + shared + list(transports)
    unknown = [k for k in raw if k not in known]
    top = TableContext(path, "", raw, check_files)
    if unknown:
        raise unknown_keys_error(top, unknown, known)
    head: _Head = parse_part(HEAD_PART, {k: v for k, v in raw.items() if k in head_keys}, top)
    if head.name != path.stem:
        raise top.error("name", f"{head.name!r} must match the file name {path.stem!r} (the "
                                f"file name is what --device takes); write name = "
                                f'"{path.stem}" or rename the file')
    transport = registry.get("transport", head.transport, top, "transport")
    registry.get("platform", head.platform, top, "platform")
    registry.get("runtime", head.runtime, top, "runtime")
    for other in transports:
        if other != transport.name and other in raw:
            raise ConfigError(f"{path}: [{other}] is the table of transport {other!r}, but this "
                              f"profile has transport = {transport.name!r}; remove [{other}] or "
                              f"set transport = {other!r}")
    if transport.table_required and transport.name not in raw:
        need = ", ".join(f.name for f in settings_fields(transport.settings) if is_required(f))
        raise ConfigError(f"{path}: transport = {transport.name!r} needs a [{transport.name}] "
                          f"table with its connection settings{f' ({need})' if need else ''}; "
                          "see docs/profiles.md")
    settings: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for name in [*shared, transport.name]:
        data = _table(raw, name, path)
        tables[name] = data
        settings.update(parse_table(name, data, TableContext(path, name, raw, check_files)))
    run: RunSettings = settings["run"]
    variant_problem = format_variant_problem(head.runtime, run.variant)
    if variant_problem:
        raise ConfigError(f"{path}: [run] variant = {run.variant!r}: {variant_problem}; set "
                          "[run] variant to one of them")
    home = transport.options.get("device_home")
    if home:
        # the transport anchors relative device paths itself nowhere (ADB): anchor here
        run = replace(run, workdir=posixpath.join(home, run.workdir))
        settings["run"] = run
    hardware = _table(raw, "hardware", path)
    budgets = _budgets(_table(raw, "budgets", path), path)
    return DeviceProfile(name=head.name, path=path, description=head.description,
                         transport=transport.name, platform=head.platform,
                         runtime=head.runtime, emulated=head.emulated,
                         hardware=dict(hardware), transport_options=dict(tables[transport.name]),
                         run=run, budgets=budgets, sensors=dict(tables.get("sensors", {})),
                         conditioning=dict(tables.get("conditioning", {})),
                         validity=dict(tables.get("validity", {})), settings=settings)


def format_variant_problem(runtime: str, variant: str, fmt: str | None = None) -> str | None:
    """Why ``variant`` cannot be built for the runtime's (or ``fmt``'s) artifact
    format, e.g. an fp32 Core ML artifact (Core ML offers fp16 and int8); None if it can."""
    from gem.export import FORMATS  # a plain table: no torch

    fmt = fmt or str(registry.get("runtime", runtime).options.get("artifact_format"))
    offered = FORMATS.get(fmt)
    if offered is None or variant in offered:
        return None
    return (f"runtime {runtime!r} runs {fmt} artifacts, which come as {', '.join(offered)} "
            f"(no {variant})")


def _budgets(table: Mapping[str, Any], path: Path) -> dict[str, dict[str, float]]:
    from harness.budgets import check_budget_table  # local: budgets imports nothing of ours

    out: dict[str, dict[str, float]] = {}
    for variant_key, value in table.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [budgets] {variant_key} = {value!r}: expected a table "
                              f"[budgets.{variant_key}] of metric limits, e.g. "
                              "[budgets.default] latency_p95_ms = 100.0")
        out[variant_key] = check_budget_table(Section(value, path, f"budgets.{variant_key}"))
    return out


def available_devices(targets_dir: Path | None = None) -> list[str]:
    return list(profile_paths(targets_dir))


def load_profile(name: str, targets_dir: Path | None = None, *,
                 check_files: bool = True) -> DeviceProfile:
    """The profile called name from the search path (see harness.resources), checked
    whole (see parse_profile)."""
    paths = profile_paths(targets_dir)
    if name not in paths:
        folders = ", ".join(str(p) for p in targets_search_path(targets_dir))
        raise UnknownDeviceError(
            f"unknown device {name!r}: no {name}.toml in {folders}. Available: "
            f"{', '.join(paths) if paths else '(none)'}; add {name}.toml to one of those "
            "folders (or pass --targets-dir DIR / set GEM_HIL_TARGETS) to define it"
        )
    return parse_profile(paths[name], check_files=check_files)
