"""`gem-hil qemu ...`: argument parsing, device name resolution, no-VM paths."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli.qemu import _image_name, _profile, add_qemu_parser, cmd_qemu
from harness.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gem-hil")
    p.add_argument("--targets-dir", default=None)
    add_qemu_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_parse_commands() -> None:
    args = parser().parse_args(["qemu", "build"])
    assert (args.qemu_command, args.image, args.func) == ("build", "pi4", cmd_qemu)
    args = parser().parse_args(["qemu", "down", "pi4", "--force"])
    assert (args.qemu_command, args.device, args.force) == ("down", "pi4", True)
    with pytest.raises(SystemExit):
        parser().parse_args(["qemu", "reboot"])


def test_short_name_means_the_qemu_profile() -> None:
    # targets/pi4.toml is the real board (ssh); `qemu up pi4` means qemu-pi4
    assert _profile("pi4", None).name == "qemu-pi4"
    assert _profile("qemu-pi4", None).name == "qemu-pi4"
    assert _image_name("qemu-pi4", None) == "pi4"
    assert _image_name("pi4", None) == "pi4"
    with pytest.raises(ConfigError, match="no QEMU device 'local'"):
        _profile("local", None)


def test_status_and_down_without_a_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEM_HIL_QEMU_STATE", str(tmp_path))
    for cmd in ("status", "down"):
        assert cmd_qemu(parser().parse_args(["qemu", cmd, "pi4"])) == 0
        assert capsys.readouterr().out.strip() == "qemu-pi4: not running"
