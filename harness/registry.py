"""One registry of every name and table a device profile may use.

labgrid's ``target_factory`` is the pattern: a transport, platform, runtime or
sensor kind registers its NAME and its TYPED SETTINGS (a frozen dataclass whose
fields are the TOML keys) here, and the profile loader checks every table and
key against what was registered, before anything is built or pushed. The key
in the profile is the registered name, so there is no list of names anywhere
else to keep in step: adding a runtime is one ``register("runtime", ...)`` call.

Import cost: registering must not import paramiko, adb-shell, numpy, torch or
onnxruntime, because ``gem-hil devices`` and every profile load pay for it.
So settings classes live in light modules (``harness.transports.ssh_settings``,
``harness.transports.adb_settings``, ``harness.qemu.settings``, ...) and a
heavy implementation is named by a ``"module:attribute"`` string that is
imported only when a device is opened (``Plugin.load()``).

Settings fields carry their documentation and limits through ``setting()``;
``markdown_reference()`` renders docs/profiles.md from the same data, so the
reference cannot drift from what the loader accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

#: Modules whose import registers the built-in plugins (light modules only).
BUILTIN_MODULES = (
    "harness.profiles",
    "harness.transports",
    "harness.transports.ssh_settings",
    "harness.transports.adb_settings",
    "harness.qemu.settings",
    "harness.platforms",
    "harness.platforms.android",
    "harness.platforms.ios",
    "harness.runtimes",
    "harness.runtime_rknn",
    "harness.validity",
    "harness.sensors.session",
    "harness.quality",
)

KINDS = ("transport", "platform", "runtime")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def setting(default: Any = REQUIRED, *, help: str, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[Any, ...] | None = None,
            example: str | None = None) -> Any:
    """A settings field: its default (none = required), meaning and limits.

    ``example`` is the right-hand side shown in "how to fix" hints when the
    default does not make a good one (a required host, say).
    """
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices,
            "example": example}
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# -- where a value came from ----------------------------------------------------


@dataclass(frozen=True)
class TableContext:
    """File and table a value came from, and the whole raw profile for checks
    that look across tables (a VM's memory default is [hardware] ram_mb)."""

    file: Path
    table: str
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: check files the settings name on this machine (an SSH key's existence and
    #: mode); off only for readers that need a profile's budgets, not its device
    check_files: bool = True

    def where(self, key: str | None = None) -> str:
        head = f"{self.file}: [{self.table}]" if self.table else f"{self.file}:"
        return f"{head} {key}" if key else head

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")


# -- the registry ---------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    """A registered transport, platform or runtime."""

    kind: str
    name: str
    help: str
    #: the implementation: an object, or "module:attr" imported on first use
    factory: Any = None
    #: the settings of its own table [<name>] (transports), or None
    settings: type | None = None
    #: whether a profile choosing it must carry its table
    table_required: bool = False
    #: kind-specific facts (e.g. a runtime's artifact format, a transport's home)
    options: Mapping[str, Any] = field(default_factory=dict)

    def load(self, option: str | None = None) -> Any:
        """The implementation (or the object named by one of its options),
        importing its module now if it was named by "module:attr"."""
        target = self.factory if option is None else self.options[option]
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as exc:
            extra = self.options.get("install_hint", "")
            raise ConfigError(f"{self.kind} {self.name!r} needs a package that is not "
                              f"installed ({exc}){'; ' + extra if extra else ''}") from None
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
        return obj


@dataclass(frozen=True)
class Part:
    """The keys of one table that one owner reads (a shared table such as
    [sensors] has several owners, told apart by a key prefix)."""

    table: str
    owner: str
    settings: type
    prefix: str = ""
    help: str = ""

    @property
    def id(self) -> str:
        return self.table if not self.prefix else f"{self.table}.{self.prefix.rstrip('_')}"

    def key_of(self, field_name: str) -> str:
        return self.prefix + field_name


class Registry:
    """Plugins by kind and name, and the owners of every profile table."""

    def __init__(self) -> None:
        self._plugins: dict[str, dict[str, Plugin]] = {k: {} for k in KINDS}
        self._parts: dict[str, list[Part]] = {}
        self._loaded = False
        #: the profile's top-level keys (set by harness.profiles), for the reference
        self.top: Part | None = None

    # registration ---------------------------------------------------------

    def register(self, kind: str, name: str, *, help: str, factory: Any = None,
                 settings: type | None = None, table_required: bool = False,
                 **options: Any) -> Plugin:
        if kind not in self._plugins:
            raise ValueError(f"unknown plugin kind {kind!r}; known: {', '.join(KINDS)}")
        if name in self._plugins[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        plugin = Plugin(kind, name, help, factory, settings, table_required, dict(options))
        self._plugins[kind][name] = plugin
        if settings is not None:
            self.register_table(name, settings, owner=f"{name} {kind}", help=help)
        return plugin

    def register_table(self, table: str, settings: type, *, owner: str, prefix: str = "",
                       help: str = "") -> Part:
        if not dataclasses.is_dataclass(settings):
            raise TypeError(f"settings of [{table}] must be a dataclass, not {settings!r}")
        parts = self._parts.setdefault(table, [])
        part = Part(table, owner, settings, prefix, help)
        taken = {p.key_of(f.name): p.owner for p in parts for f in settings_fields(p.settings)}
        clash = sorted(k for k in (part.key_of(f.name) for f in settings_fields(settings))
                       if k in taken)
        if clash:
            raise ValueError(f"[{table}] key(s) {', '.join(clash)} of {owner} are already "
                             f"registered by {taken[clash[0]]}")
        parts.append(part)
        return part

    def table(self, name: str, *, owner: str, prefix: str = "", help: str = ""
              ) -> Callable[[type], type]:
        """Class decorator: ``@registry.table("validity", owner="validity")``."""
        def deco(cls: type) -> type:
            self.register_table(name, cls, owner=owner, prefix=prefix, help=help)
            return cls
        return deco

    def plugin(self, kind: str, name: str, *, help: str, **kw: Any) -> Callable[[Any], Any]:
        """Decorator for an implementation class (``factory``) or, with
        ``settings_of=True``, for the settings class of a lazily named factory."""
        settings_of = kw.pop("settings_of", False)

        def deco(obj: Any) -> Any:
            if settings_of:
                self.register(kind, name, help=help, settings=obj, **kw)
            else:
                self.register(kind, name, help=help, factory=obj, **kw)
            return obj
        return deco

    # lookup ---------------------------------------------------------------

    def ensure_loaded(self) -> None:
        """Import the built-in plugin modules once (each registers itself)."""
        if self._loaded:
            return
        self._loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)

    def names(self, kind: str) -> list[str]:
        self.ensure_loaded()
        return sorted(self._plugins[kind])

    def plugins(self, kind: str) -> list[Plugin]:
        self.ensure_loaded()
        return [self._plugins[kind][n] for n in sorted(self._plugins[kind])]

    def get(self, kind: str, name: str, ctx: TableContext | None = None,
            key: str | None = None) -> Plugin:
        """The plugin, or a ConfigError naming file, key, value and the known names."""
        self.ensure_loaded()
        found = self._plugins[kind].get(name)
        if found is not None:
            return found
        known = ", ".join(sorted(self._plugins[kind]))
        hint = _did_you_mean(name, self._plugins[kind])
        key = key or kind
        where = f"{ctx.where()} " if ctx else ""
        raise ConfigError(
            f"{where}{key} = {name!r}: no implementation of {kind} {name!r} in this "
            f"gem-hil{hint}; known {kind}s: {known}. Set {key} to one of them, or "
            f"register a {kind} named {name!r} (docs/profiles.md)")

    def parts(self, table: str) -> list[Part]:
        """The owners of a table, the one without a key prefix first."""
        self.ensure_loaded()
        return sorted(self._parts.get(table, ()), key=lambda p: (p.prefix != "", p.prefix))

    def tables(self) -> list[str]:
        self.ensure_loaded()
        return list(self._parts)


registry = Registry()


# -- checking a table -------------------------------------------------------------


def settings_fields(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def _members(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          dict: "a table", Path: "a path (string)"}


def type_name(hint: Any) -> str:
    """'an integer', 'a list of integers', 'true or false or a string', ..."""
    names = []
    for m in _members(hint):
        origin = typing.get_origin(m)
        if origin is list:
            (inner,) = typing.get_args(m) or (Any,)
            word = _NAMES.get(inner, "value").split(" ", 1)[-1]
            names.append(f"a list of {word}s" if inner is not bool else "a list of booleans")
        else:
            names.append(_NAMES.get(m, getattr(m, "__name__", str(m))))
    return " or ".join(names)


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, value converted to the field's type). TOML ints count as numbers;
    booleans never count as numbers."""
    for m in _members(hint):
        origin = typing.get_origin(m)
        if origin is list:
            if isinstance(value, list):
                (inner,) = typing.get_args(m) or (Any,)
                out = []
                for item in value:
                    ok, conv = _convert(item, inner) if inner is not Any else (True, item)
                    if not ok:
                        break
                    out.append(conv)
                else:
                    return True, out
            continue
        if m is Any:
            return True, value
        if m is bool:
            if isinstance(value, bool):
                return True, value
        elif m is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
        elif m is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True, float(value)
        elif m is str:
            if isinstance(value, str):
                return True, value
        elif m is Path:
            if isinstance(value, str | Path):
                return True, Path(value)
        elif m is dict:
            if isinstance(value, dict):
                return True, value
        elif isinstance(m, type) and isinstance(value, m):
            return True, value
    return False, value


def _toml(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _sample(f: dataclasses.Field, hint: Any) -> str:
    """A right-hand side for a 'write it like this' hint."""
    if f.metadata.get("example"):
        return str(f.metadata["example"])
    d = default_of(f)
    if d is not REQUIRED and d is not None:
        return _toml(d)
    choices = f.metadata.get("choices")
    if choices:
        return _toml(choices[0])
    first = _members(hint)[0]
    return {bool: "true", int: "1", float: "1.0", str: '"..."'}.get(first, "[...]")


def _did_you_mean(name: str, known: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_keys_error(ctx: TableContext, unknown: list[str], known: list[str]) -> ConfigError:
    """Unknown keys are reported before anything else: a misspelt key would
    otherwise surface as a confusing "missing" for the key it was meant to be."""
    bits = [f"{k}{_did_you_mean(k, known)}" for k in unknown]
    label = f"[{ctx.table}]" if ctx.table else "[top level]"
    return ConfigError(
        f"{ctx.file}: {label} unknown key(s) {', '.join(bits)}; known keys: "
        f"{', '.join(sorted(known)) or '(none: this table takes no keys)'}. Rename or remove "
        "it (docs/profiles.md lists every key)")


def parse_part(part: Part, data: Mapping[str, Any], ctx: TableContext) -> Any:
    """Check the keys of one owner and build its settings object.

    Order: types and limits of the given keys, then missing required keys,
    then the class's own cross-key ``check(ctx)``. Unknown keys are the
    caller's job (parse_table), because a shared table's keys are split
    between owners first.
    """
    cls = part.settings
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in settings_fields(cls):
        key = part.key_of(f.name)
        if key not in data:
            continue
        hint = hints[f.name]
        ok, value = _convert(data[key], hint)
        if not ok:
            raise ctx.error(key, f"expected {type_name(hint)}, got {_toml(data[key])} "
                                 f"({type_name(type(data[key]))}); write it like "
                                 f"{key} = {_sample(f, hint)}")
        md = f.metadata
        choices = md.get("choices")
        if choices is not None and value not in choices:
            raise ctx.error(key, f"{_toml(value)} is not one of "
                                 f"{', '.join(_toml(c) for c in choices)}; pick one of them")
        if md.get("minimum") is not None and value < md["minimum"]:
            raise ctx.error(key, f"{value!r} is below the minimum {md['minimum']!r}; set it to "
                                 f"at least {md['minimum']!r}")
        if md.get("maximum") is not None and value > md["maximum"]:
            raise ctx.error(key, f"{value!r} is above the maximum {md['maximum']!r}; set it to "
                                 f"at most {md['maximum']!r}")
        values[f.name] = value
    for f in settings_fields(cls):
        if is_required(f) and f.name not in values:
            key = part.key_of(f.name)
            raise ctx.error(key, f"missing; expected {type_name(hints[f.name])}: "
                                 f"{f.metadata.get('help', '')}. Add {key} = "
                                 f"{_sample(f, hints[f.name])} to [{ctx.table}]")
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        checked = check(ctx)
        if checked is not None:
            obj = checked
    return obj


def parse_table(table: str, data: Mapping[str, Any], ctx: TableContext,
                parts: list[Part] | None = None) -> dict[str, Any]:
    """Every owner's settings of one table, keyed by Part.id; unknown keys first."""
    parts = registry.parts(table) if parts is None else parts
    known = [p.key_of(f.name) for p in parts for f in settings_fields(p.settings)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise unknown_keys_error(ctx, unknown, known)
    out: dict[str, Any] = {}
    for p in parts:
        mine = {k: v for k, v in data.items()
                if k.startswith(p.prefix) and k in {p.key_of(f.name) for f in
                                                    settings_fields(p.settings)}}
        out[p.id] = parse_part(p, mine, ctx)
    return out


def parse_settings(cls: type, data: Mapping[str, Any], ctx: TableContext) -> Any:
    """One settings class from one table (unknown keys, types, limits, checks)."""
    return parse_table(ctx.table, data, ctx, [Part(ctx.table, cls.__name__, cls)])[ctx.table]


# -- documentation -----------------------------------------------------------------


def _rows(part: Part) -> Iterator[tuple[str, str, str, str]]:
    hints = _hints(part.settings)
    for f in settings_fields(part.settings):
        d = default_of(f)
        default = "required" if d is REQUIRED else ("unset" if d is None else _toml(d))
        md = f.metadata
        limits = []
        if md.get("choices"):
            limits.append("one of " + ", ".join(_toml(c) for c in md["choices"]))
        if md.get("minimum") is not None:
            limits.append(f">= {md['minimum']!r}")
        if md.get("maximum") is not None:
            limits.append(f"<= {md['maximum']!r}")
        text = md.get("help", "") + (f" ({'; '.join(limits)})" if limits else "")
        yield part.key_of(f.name), type_name(hints[f.name]), default, text


def markdown_reference() -> str:
    """docs/profiles.md's key reference, from the registry itself."""
    registry.ensure_loaded()
    out: list[str] = []
    for kind in KINDS:
        out.append(f"### `{kind}` — registered names")
        out.append("")
        for p in registry.plugins(kind):
            table = f" (table `[{p.name}]`)" if p.settings is not None else ""
            out.append(f"* `{p.name}`{table}: {p.help}")
        out.append("")
    parts = [registry.top] if registry.top is not None else []
    # a fixed order, whatever order the modules happened to be imported in
    plugin_tables = sorted(p.name for p in registry.plugins("transport") if p.settings)
    rest = sorted(t for t in registry.tables() if t not in plugin_tables and t != "run")
    order = (["run"] if "run" in registry.tables() else []) + plugin_tables + rest
    parts += [part for table in order for part in registry.parts(table)]
    for part in parts:
        table = part.table
        title = ("### Top-level keys" if not table else f"### `[{table}]`" + (
            f" — `{part.prefix}*` keys ({part.owner})" if part.prefix else
            f" ({part.owner})"))
        out += [title, ""]
        if part.help:
            out += [part.help, ""]
        if not settings_fields(part.settings):
            out += ["This table takes no keys.", ""]
            continue
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key, typ, default, text in _rows(part):
            out.append(f"| `{key}` | {typ} | `{default}` | {text.replace('|', '/')} |"
                       if default != "required" else
                       f"| `{key}` | {typ} | **required** | {text.replace('|', '/')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


DOC_BEGIN = "<!-- BEGIN reference: generated by `python -m harness.registry docs/profiles.md` -->"
DOC_END = "<!-- END reference -->"


def render_doc(text: str) -> str:
    """text with the part between DOC_BEGIN and DOC_END replaced by the reference."""
    head, sep, rest = text.partition(DOC_BEGIN)
    _, sep2, tail = rest.partition(DOC_END)
    if not sep or not sep2:
        raise ValueError(f"the document needs the markers {DOC_BEGIN!r} and {DOC_END!r}")
    return f"{head}{DOC_BEGIN}\n\n{markdown_reference()}\n{DOC_END}{tail}"


if __name__ == "__main__":
    import sys

    # run as a script this file is __main__, not the harness.registry the
    # plugins register in: use that one
    from harness.registry import render_doc as _render

    for name in sys.argv[1:]:
        doc = Path(name)
        doc.write_text(_render(doc.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote {doc}")
