"""A broken profile stops `gem-hil bench` before any build and leaves no record;
`gem-hil devices` lists it as invalid with the message. Real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sshd_board import write_ed25519_key

REPO = Path(__file__).resolve().parents[2]
HEAD = 'name = "{name}"\ntransport = "{transport}"\nplatform = "linux"\nruntime = "onnxruntime"\n'


def _targets(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A targets folder with one good and several broken profiles; name -> the
    message the loader must give (without the file prefix)."""
    d = tmp_path / "targets"
    d.mkdir()
    (d / "local.toml").write_text((REPO / "targets" / "local.toml").read_text())
    open_key = tmp_path / "id_open"
    write_ed25519_key(open_key, mode=0o644)
    good_key = tmp_path / "id_good"
    write_ed25519_key(good_key)
    broken = {
        "typo": (HEAD.format(name="typo", transport="local")
                 + "[validity]\nmax_spreadd = 1.0\n",
                 "[validity] unknown key(s) max_spreadd (did you mean max_spread?)"),
        "strport": (HEAD.format(name="strport", transport="ssh")
                    + f'[ssh]\nhost = "127.0.0.1"\nport = "22"\nuser = "u"\n'
                      f'key_file = "{good_key}"\n',
                    '[ssh] port: expected an integer, got "22" (a string)'),
        "openkey": (HEAD.format(name="openkey", transport="ssh")
                    + f'[ssh]\nhost = "127.0.0.1"\nuser = "u"\nkey_file = "{open_key}"\n',
                    f"[ssh] key_file: {open_key} is accessible by others (mode 0644)"),
        "escape": (HEAD.format(name="escape", transport="local")
                   + '[run]\nworkdir = "../../etc"\n',
                   "[run] workdir: '../../etc' has a '..' component"),
        "npu": (HEAD.format(name="npu", transport="local").replace('"linux"', '"npu"'),
                "platform = 'npu': no implementation of platform 'npu'"),
    }
    for name, (text, _) in broken.items():
        (d / f"{name}.toml").write_text(text)
    return d, {name: msg for name, (_, msg) in broken.items()}


def _env(tmp_path: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "GEM_HIL_CACHE": str(cache),
            "GEM_HIL_LOCAL_HOME": str(tmp_path / "device-home")}


@pytest.mark.parametrize("device", ["typo", "strport", "openkey", "escape", "npu"])
def test_broken_profile_fails_bench_before_any_build(tmp_path: Path, device: str) -> None:
    targets, expected = _targets(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    reports = tmp_path / "reports"
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--targets-dir", str(targets), "bench",
         "--device", device, "--report-dir", str(reports)],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path, cache), cwd=tmp_path,
        stdin=subprocess.DEVNULL)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"gem-hil: error: {targets / device}.toml: {expected[device]}" in res.stderr, \
        res.stderr
    assert "building" not in res.stderr and "Traceback" not in res.stderr
    assert list(cache.iterdir()) == []  # no artifact was built
    assert not reports.exists() or list(reports.rglob("*")) == []  # no record
    assert not (tmp_path / "device-home").exists()  # nothing pushed


def test_devices_lists_broken_profiles_as_invalid_with_the_message(tmp_path: Path) -> None:
    targets, expected = _targets(tmp_path)
    gem_hil = Path(sys.executable).with_name("gem-hil")
    argv = [str(gem_hil)] if gem_hil.exists() else [sys.executable, "-m", "harness.cli"]
    cache = tmp_path / "cache"
    res = subprocess.run([*argv, "--targets-dir", str(targets), "devices"], capture_output=True,
                         text=True, timeout=120, env=_env(tmp_path, cache), cwd=tmp_path)
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines()[2:]}
    assert {"local", *expected} <= set(rows)  # with the shipped profiles
    assert "INVALID" not in rows["local"] and "onnxruntime" in rows["local"]
    for name, msg in expected.items():
        assert rows[name].rstrip().endswith("INVALID"), rows[name]
        assert f"{name}: INVALID: {targets / name}.toml: {msg}" in res.stderr, res.stderr
    assert res.returncode == 0  # a listing reports
    named = subprocess.run([*argv, "devices", "--targets-dir", str(targets), "local",
                            *expected], capture_output=True, text=True, timeout=120,
                           env=_env(tmp_path, cache), cwd=tmp_path)
    assert named.returncode == 3, named.stdout + named.stderr  # named devices: strict
