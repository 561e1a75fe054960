"""The stand-in Mac for the iOS platform's integration tests.

A real OpenSSH sshd board (tests/support/sshd_board.py) plays the macOS host:
the harness logs in over real SSH, pushes, unzips, copies and reads files
there with real tools, and calls ``xcrun`` — which is tests/support/fake_xcrun.py,
installed in the login's home with the recordings of tests/data/ios/ and
reached through the profile's ``[ios] xcrun`` key (sshd gives every command
the same fixed PATH, so a folder cannot be put on it per test). FakeMac puts
that in place, writes the profile, and reads back what the fake was asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

from tests.support.sshd_board import SshdBoard, set_toml_keys

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "tests" / "data" / "ios"
FAKE = Path(__file__).with_name("fake_xcrun.py")
#: the UDID of the iPhone 13 in the recordings (devicectl_list_devices.json)
RECORDED_UDID = "00008110-001A2B3C4D5E801E"


class FakeMac:
    """One test's fake Xcode on the board: its own folder, workdir and app."""

    def __init__(self, board: SshdBoard, workdir: str | None = None,
                 app: str = "ios/Gem Bench.app") -> None:
        self.board = board
        tag = uuid.uuid4().hex[:8]
        self.root = board.home / f"fake-xcode-{tag}"
        # a space and a quote: every remote command must quote its paths
        self.workdir = workdir or f"gem-hil ios '{tag}'"
        self.app = app
        self.xcrun = self.root / "xcrun"

    def install(self) -> FakeMac:
        rec = self.root / "recordings"
        rec.mkdir(parents=True)
        for f in RECORDINGS.iterdir():
            shutil.copy(f, rec / f.name)
        shutil.copy(FAKE, self.root / "fake_xcrun.py")
        self.xcrun.write_text(f"#!/bin/sh\nexec {self.board.python} -I "
                              f"{self.root / 'fake_xcrun.py'} \"$@\"\n")
        self.xcrun.chmod(0o755)
        self.scenario()
        bundle = self.board.home / self.workdir / self.app
        bundle.mkdir(parents=True)
        (bundle / "Info.plist").write_text("<?xml version=\"1.0\"?><plist><dict><key>"
                                           "CFBundleIdentifier</key><string>dev.gemhil."
                                           "GemBench</string></dict></plist>\n")
        (bundle / "GemBench").write_bytes(b"\xcf\xfa\xed\xfe placeholder Mach-O\n")
        self._chown(self.root)
        self._chown(self.board.home / self.workdir)
        return self

    def _chown(self, path: Path) -> None:
        pw = pwd.getpwnam(self.board.user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def scenario(self, udid: str = RECORDED_UDID, **kw: str) -> None:
        path = self.root / "scenario.json"
        path.write_text(json.dumps({"udid": udid, **kw}))
        with contextlib.suppress(OSError):
            self._chown(path)

    def make_targets(self, dest: Path, *, udid: str = RECORDED_UDID,
                     ios: dict[str, Any] | None = None, coreml: dict[str, Any] | None = None,
                     **run: Any) -> Path:
        """dest/iphone13.toml: the shipped profile aimed at the board and the fake."""
        dest.mkdir(parents=True, exist_ok=True)
        text = (REPO / "targets" / "iphone13.toml").read_text(encoding="utf-8")
        text = set_toml_keys(text, "ssh", self.board.ssh_table())
        text = set_toml_keys(text, "ios", {"udid": udid, "xcrun": str(self.xcrun),
                                           "app": self.app, **(ios or {})})
        if coreml:
            text = set_toml_keys(text, "coreml", coreml)
        text = set_toml_keys(text, "run", {"workdir": self.workdir, "min_count": 100,
                                           "min_duration_s": 1.0, "warmup_count": 10,
                                           "timeout_s": 60.0, **run})
        (dest / "iphone13.toml").write_text(text, encoding="utf-8")
        return dest

    def calls(self) -> list[list[str]]:
        """Every argv xcrun got, in order (without the leading "xcrun")."""
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines() if line]

    def call_records(self) -> list[dict[str, Any]]:
        path = self.root / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def running_apps(self) -> list[int]:
        """PIDs of live stand-in app processes the fake started."""
        path = self.root / "phone" / "running.json"
        if not path.exists():
            return []
        return [p["pid"] for p in json.loads(path.read_text()) if _alive(p["pid"])]

    def phone_file(self, bundle: str, rel: str) -> Path:
        return self.root / "phone" / "container" / bundle / rel

    def cleanup(self) -> None:
        for pid in self.running_apps():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.board.home / self.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
