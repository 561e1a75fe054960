"""Run the peer as a separate host: a network namespace joined by a veth
pair, with nftables dropping a share of packets (netem is not available in
this kernel; ``numgen random mod 100 < N drop`` is). Needs root, `ip`, `nft`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 nftables)"
    probe = f"gemhil-probe-{secrets.token_hex(3)}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"ip netns add failed: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


class LossyPeerHost:
    """A namespace 'phone' at 10.231.N.2 reachable from the host at .1."""

    def __init__(self, sandbox: Path, authorized_key: Path, loss_percent: int) -> None:
        tag = secrets.token_hex(3)
        self.ns = f"gemhil-adb-{tag}"
        self.veth_host, self.veth_dev = f"gha{tag}", f"ghd{tag}"
        octet = int(tag[:2], 16) % 200 + 20
        self.host_ip, self.dev_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self.port = 5555
        self.sandbox, self.key, self.loss = sandbox, authorized_key, loss_percent
        self.proc: subprocess.Popen | None = None

    def start(self) -> LossyPeerHost:
        _sh("ip", "netns", "add", self.ns)
        try:
            _sh("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_dev)
            _sh("ip", "link", "set", self.veth_dev, "netns", self.ns)
            _sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.veth_host)
            _sh("ip", "link", "set", self.veth_host, "up")
            _sh("ip", "-n", self.ns, "addr", "add", f"{self.dev_ip}/24", "dev", self.veth_dev)
            _sh("ip", "-n", self.ns, "link", "set", self.veth_dev, "up")
            _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            if self.loss:
                rules = (f"table inet gemhil_loss {{\n"
                         f" chain in {{ type filter hook input priority 0; policy accept;\n"
                         f"  iifname \"{self.veth_dev}\" numgen random mod 100 < {self.loss}"
                         f" drop\n }}\n"
                         f" chain out {{ type filter hook output priority 0; policy accept;\n"
                         f"  oifname \"{self.veth_dev}\" numgen random mod 100 < {self.loss}"
                         f" drop\n }}\n"
                         f"}}\n")
                res = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"],
                                     input=rules, text=True, capture_output=True)
                if res.returncode != 0:
                    raise RuntimeError(f"nft rules failed: {res.stderr.strip()}")
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.adb_peer",
                 "--sandbox", str(self.sandbox), "--host", self.dev_ip, "--port",
                 str(self.port), "--authorized-key", str(self.key)],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.startswith("ADB_PEER_LISTENING"):
                raise RuntimeError(f"peer did not start: {line!r} {self.proc.stderr.read()}")
        except BaseException:
            self.cleanup()
            raise
        return self

    @property
    def address(self) -> str:
        return f"{self.dev_ip}:{self.port}"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        subprocess.run(["ip", "link", "del", self.veth_host], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        time.sleep(0.05)

    def __enter__(self) -> LossyPeerHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
