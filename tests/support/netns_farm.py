"""An emulated farm: real sshd boards, each in its own network namespace.

Layout (every address lives inside a namespace this module creates; the
host's own namespaces and routes are not touched):

    ns "<tag>-farm"  (the farm runs here: ip netns exec ... gem-hil farm run)
       veth f<i>  10.<x>.<i>.1/24  <---->  veth b<i>  10.<x>.<i>.2/24  in ns "<tag>-b<i>"
                                                                       sshd on port 2222

Faults are applied to one board's namespace: packet loss (nftables
``numgen random mod 100 < N drop``), a rate limit (``tc tbf``), a black hole
(nft drop of everything) or killing its sshd. Needs root, ip, nft, tc.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.sshd_board import SSHD, SshdBoard

REPO = Path(__file__).resolve().parents[2]


def unavailable_reason() -> str | None:
    from tests.adb_peer.netns import unavailable_reason as netns_reason

    reason = SshdBoard.unavailable_reason() or netns_reason()
    if reason:
        return reason
    if shutil.which("tc") is None:
        return "`tc` not installed (apt-get install iproute2)"
    return None


def sh(*argv: str, input: str | None = None) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


class NetnsBoard(SshdBoard):
    """SshdBoard whose sshd listens on its own namespace's address."""

    def __init__(self, name: str, ns: str, address: str) -> None:
        super().__init__()  # its folder in /tmp: sshd reads it as the login user
        self.name, self.ns = name, ns
        self.host = address  # an instance attribute over SshdBoard's loopback

    def start(self) -> NetnsBoard:
        pw = self._ensure_user()
        self.home = Path(pw.pw_dir)
        self._make_keys()
        self.python = self._python_for_user(pw)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.port = 2222
        self._write_config()
        text = self.config_path.read_text().replace("ListenAddress 127.0.0.1",
                                                    f"ListenAddress {self.host}")
        self.config_path.write_text(text)
        self.log_path.write_text("")
        sh("ip", "netns", "exec", self.ns, SSHD, "-f", str(self.config_path), "-E",
           str(self.log_path))
        deadline = time.monotonic() + 10
        while "Server listening" not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {self.ns} did not start: "
                                   f"{self.log_path.read_text()[-1000:]}")
            time.sleep(0.05)
        self._started = True
        self._write_known_hosts()
        return self

    def kill_sshd(self) -> None:
        """The board's sshd and every connection it serves die at once."""
        self.stop()

    def profile(self, targets: Path, **run: object) -> Path:
        """targets/<name>.toml aimed at this board, its own work folder."""
        tmp = targets / f".{self.name}"
        self.make_targets_dir(tmp, ssh={"connect_timeout_s": 5, "keepalive_s": 2,
                                        "command_timeout_s": 60},
                              workdir=f"gem-hil-{self.name}", **run)
        text = (tmp / "ssh-board.toml").read_text()
        text = text.replace('name = "ssh-board"', f'name = "{self.name}"')
        text = re.sub(r'(?m)^description = .*', f'description = "emulated farm board '
                                                  f'{self.name} (netns {self.ns})"', text)
        out = targets / f"{self.name}.toml"
        out.write_text(text)
        shutil.rmtree(tmp)
        return out


class NetnsFarm:
    def __init__(self, names: list[str], base: Path) -> None:
        self.tag = f"gh{secrets.token_hex(2)}"
        self.x = int(self.tag[2:4], 16) % 200 + 20
        self.base = base
        self.farm_ns = f"{self.tag}-farm"
        self.boards: dict[str, NetnsBoard] = {}
        self.names = names
        self._namespaces: list[str] = []

    def start(self) -> NetnsFarm:
        try:
            self._add_ns(self.farm_ns)
            for i, name in enumerate(self.names, 1):
                ns = f"{self.tag}-b{i}"
                self._add_ns(ns)
                fv, bv = f"{self.tag}f{i}", f"{self.tag}b{i}"
                sh("ip", "-n", self.farm_ns, "link", "add", fv, "type", "veth", "peer", "name",
                   bv, "netns", ns)
                sh("ip", "-n", self.farm_ns, "addr", "add", f"10.{self.x}.{i}.1/24", "dev", fv)
                sh("ip", "-n", self.farm_ns, "link", "set", fv, "up")
                sh("ip", "-n", ns, "addr", "add", f"10.{self.x}.{i}.2/24", "dev", bv)
                sh("ip", "-n", ns, "link", "set", bv, "up")
                board = NetnsBoard(name, ns, f"10.{self.x}.{i}.2")
                board.veth = bv  # type: ignore[attr-defined]
                self.boards[name] = board
                board.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    # -- faults -------------------------------------------------------------

    def loss(self, name: str, percent: int) -> None:
        b = self.boards[name]
        rules = (f"table inet gemhil_loss {{\n"
                 f" chain in {{ type filter hook input priority 0; policy accept;\n"
                 f"  iifname \"{b.veth}\" numgen random mod 100 < {percent} drop\n }}\n"  # type: ignore[attr-defined]
                 f" chain out {{ type filter hook output priority 0; policy accept;\n"
                 f"  oifname \"{b.veth}\" numgen random mod 100 < {percent} drop\n }}\n}}\n")  # type: ignore[attr-defined]
        sh("ip", "netns", "exec", b.ns, "nft", "-f", "-", input=rules)

    def rate_limit(self, name: str, rate: str = "2mbit") -> None:
        b = self.boards[name]
        sh("ip", "netns", "exec", b.ns, "tc", "qdisc", "add", "dev", b.veth, "root",  # type: ignore[attr-defined]
           "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")

    def black_hole(self, name: str) -> None:
        b = self.boards[name]
        rules = ("table inet gemhil_hole {\n"
                 " chain in { type filter hook input priority -10; policy drop; }\n"
                 " chain out { type filter hook output priority -10; policy drop; }\n}\n")
        sh("ip", "netns", "exec", b.ns, "nft", "-f", "-", input=rules)

    def heal(self, name: str) -> None:
        """Undo a black hole and bring a killed sshd back (the next night)."""
        b = self.boards[name]
        subprocess.run(["ip", "netns", "exec", b.ns, "nft", "delete", "table", "inet",
                        "gemhil_hole"], capture_output=True)
        if b.sshd_pid is None:
            b.start()

    # -- running the farm inside the farm namespace ----------------------------------

    def run(self, argv: list[str], timeout: float = 900, env: dict | None = None
            ) -> subprocess.CompletedProcess:
        env = dict(env or os.environ)
        env["PYTHONPATH"] = str(REPO)
        return subprocess.run(["ip", "netns", "exec", self.farm_ns, sys.executable, *argv],
                              cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def cleanup(self) -> None:
        for b in self.boards.values():
            b.stop()
        for ns in reversed(self._namespaces):  # deleting a namespace deletes its veths
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()
        for b in self.boards.values():
            shutil.rmtree(b.base, ignore_errors=True)

    def remove_created_user(self) -> list[str]:
        done: list[str] = []
        for b in self.boards.values():
            done += b.remove_created_user()
        return done

    def __enter__(self) -> NetnsFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
