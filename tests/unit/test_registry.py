"""harness.registry: every registered table and key is checked at load, the
reference in docs/profiles.md is the registry's, and loading stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import profiles
from harness.errors import ConfigError
from harness.profiles import parse_profile
from harness.registry import (
    Plugin,
    registry,
    render_doc,
    settings_fields,
    type_name,
)
from tests.support.sshd_board import write_ed25519_key

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("paramiko", "adb_shell", "torch", "onnxruntime", "numpy")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    write_ed25519_key(path)
    return path


def profile_text(table: str, values: dict[str, Any], key: Path) -> str:
    """A valid profile whose [table] holds values (plus what that table needs)."""
    transport, platform, base = "local", "linux", {}
    if table == "ssh":
        transport, base = "ssh", {"host": "h", "user": "u", "key_file": str(key)}
    elif table == "adb":
        transport, platform, base = "adb", "android", {"serial": "x"}
    elif table == "qemu":
        transport = "qemu"
    body = {**base, **values}
    lines = [f'name = "b"\ntransport = "{transport}"\nplatform = "{platform}"\n'
             'runtime = "onnxruntime"', f"[{table}]"]
    lines += [f"{k} = {_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def all_keys() -> list[tuple[str, str, Any]]:
    """(table, key, field type) of every registered key."""
    import typing

    out = []
    for table in registry.tables():
        for part in registry.parts(table):
            hints = typing.get_type_hints(part.settings)
            out += [(table, part.key_of(f.name), hints[f.name])
                    for f in settings_fields(part.settings)]
    return out


ALL_KEYS = all_keys()


def test_every_table_of_the_shipped_profiles_is_registered() -> None:
    import tomllib

    tables = set(registry.tables()) | {"hardware", "budgets"}
    for path in (REPO / "targets").glob("*.toml"):
        raw = tomllib.loads(path.read_text())
        assert {k for k, v in raw.items() if isinstance(v, dict)} <= tables, path
    assert {"run", "validity", "sensors", "conditioning", "local", "ssh", "adb", "qemu"} <= \
        set(registry.tables())


@pytest.mark.parametrize(("table", "key", "hint"), ALL_KEYS,
                         ids=[f"{t}.{k}" for t, k, _ in ALL_KEYS])
def test_every_key_refuses_a_wrong_type_naming_file_table_and_key(
        tmp_path: Path, key: Path, table: str, hint: Any, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["key"]
    path = tmp_path / "b.toml"
    path.write_text(profile_text(table, {name: {"oops": 1}}, key))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert str(exc.value).startswith(
        f"{path}: [{table}] {name}: expected {type_name(hint)}, got {{ oops = 1 }} (a table); "
        f"write it like {name} = "), str(exc.value)


@pytest.mark.parametrize(("table", "key", "hint"), ALL_KEYS,
                         ids=[f"{t}.{k}" for t, k, _ in ALL_KEYS])
def test_every_key_misspelt_by_one_letter_is_unknown_with_a_suggestion(
        tmp_path: Path, key: Path, table: str, hint: Any, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["key"]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    path = tmp_path / "b.toml"
    path.write_text(profile_text(table, {typo: 1}, key))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: [{table}] unknown key(s) {typo} (did you mean "), msg
    assert name in msg.split("known keys: ")[1]


@pytest.mark.parametrize("missing", ["host", "user", "key_file"])
def test_required_keys_are_named_when_missing(tmp_path: Path, key: Path, missing: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(profile_text("ssh", {}, key).replace(
        next(ln for ln in profile_text("ssh", {}, key).splitlines()
             if ln.startswith(f"{missing} =")) + "\n", ""))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert str(exc.value).startswith(f"{path}: [ssh] {missing}: missing; expected a string")
    assert f"Add {missing} = " in str(exc.value)


def test_docs_profiles_md_is_the_registrys_reference() -> None:
    doc = REPO / "docs" / "profiles.md"
    text = doc.read_text(encoding="utf-8")
    assert render_doc(text) == text, ("docs/profiles.md is out of date: run "
                                      "python -m harness.registry docs/profiles.md")
    for table, key_name, _ in ALL_KEYS:
        assert f"| `{key_name}` |" in text, (table, key_name)


def test_no_name_lists_to_keep_in_step() -> None:
    for name in ("TRANSPORTS", "PLATFORMS", "RUNTIMES", "OPTIONAL_TABLES"):
        assert not hasattr(profiles, name)
    src = (REPO / "harness" / "transports" / "__init__.py").read_text()
    assert "qemu" not in re.sub(r'"""[\s\S]*?"""', "", src)  # no emulator in the link layer
    src = (REPO / "harness" / "platforms" / "__init__.py").read_text()
    assert "LinuxPlatform(profile)" not in src  # no fall-back


def test_adding_a_runtime_is_one_registration(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.toml"
    # a runtime nobody registered (rknn, the last one added, is registered now)
    path.write_text('name = "b"\ntransport = "local"\nplatform = "linux"\n'
                    'runtime = "acme-npu"\n')
    with pytest.raises(ConfigError, match="runtime = 'acme-npu': no implementation"):
        parse_profile(path)
    acme = Plugin("runtime", "acme-npu", "ACME NPU", options={"artifact_format": "onnx"})
    monkeypatch.setitem(registry._plugins["runtime"], "acme-npu", acme)
    assert parse_profile(path).runtime == "acme-npu"


def test_registering_twice_or_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("runtime", "onnxruntime", help="again")
    with pytest.raises(ValueError, match="unknown plugin kind"):
        registry.register("sensor-bus", "i2c", help="?")


def test_every_lazy_implementation_resolves() -> None:
    for kind in ("transport", "platform"):
        for plugin in registry.plugins(kind):
            if plugin.options.get("machine"):
                import importlib

                machine = importlib.import_module(plugin.options["machine"])
                for fn in ("attach", "link_settings", "detach", "wrap"):
                    assert callable(getattr(machine, fn)), (plugin.name, fn)
                link = registry.get("transport", plugin.options["link"])
                assert callable(link.load("from_settings"))
            else:
                assert callable(plugin.load()), plugin.name


def _imported_while_loading(name: str, targets: Path, env: dict[str, str]) -> set[str]:
    """Top-level package names imported by loading one profile, from -X importtime."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         f"from harness.profiles import load_profile; load_profile({name!r}, "
         f"__import__('pathlib').Path({str(targets)!r}))"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    mods = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return mods


def test_loading_a_profile_imports_no_heavy_package(tmp_path: Path) -> None:
    import os

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for k in ("id_ed25519", "gem-hil-board"):
        write_ed25519_key(home / ".ssh" / k)
    env = {**os.environ, "HOME": str(home)}
    for name in ("local", "ssh-board", "pi4", "pixel6-emulated", "qemu-pi4", "qemu-user-pi4"):
        mods = _imported_while_loading(name, REPO / "targets", env)
        assert "harness" in mods, mods
        assert not mods & set(HEAVY), (name, sorted(mods & set(HEAVY)))


def test_two_owners_cannot_claim_one_key() -> None:
    from dataclasses import dataclass

    from harness.registry import Registry, setting

    @dataclass(frozen=True, kw_only=True)
    class A:
        idle_s: float = setting(1.0, help="a")

    reg = Registry()
    reg.register_table("sensors", A, owner="one")
    with pytest.raises(ValueError, match=r"\[sensors\] key\(s\) idle_s of two are already "
                                         "registered by one"):
        reg.register_table("sensors", A, owner="two")
    reg.register_table("sensors", A, owner="three", prefix="x_")  # x_idle_s: no clash
