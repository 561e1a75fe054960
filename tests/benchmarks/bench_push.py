"""Push throughput over SSH vs OpenSSH scp, re-push cost, exec round trip.

Run as root (it starts its own loopback sshd like the test fixture):

    python tests/benchmarks/bench_push.py [--size-mb 64] [--repeat 5] [--no-write]

Every figure is the median of --repeat runs measured in THIS run (the machine
is shared and noisy, so only same-run comparisons mean anything). The table
is printed and written between the bench_push markers in docs/ssh.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: the repository root, for harness and tests

from harness.transports.base import sha256_file  # noqa: E402
from harness.transports.ssh import SshTransport  # noqa: E402
from tests.support.sshd_board import SshdBoard  # noqa: E402

DOC = REPO / "docs" / "ssh.md"
BEGIN, END = "<!-- bench_push:begin -->", "<!-- bench_push:end -->"


def median_of(n: int, fn: Callable[[int], None]) -> tuple[float, list[float]]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/ssh.md")
    args = ap.parse_args()
    reason = SshdBoard.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    n = args.repeat
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(prefix="gem-hil-bench-") as tmp, SshdBoard() as board:
        big = Path(tmp) / "artifact.bin"
        big.write_bytes(os.urandom(size))
        want = sha256_file(big)

        def new_transport() -> SshTransport:
            return SshTransport("bench", board.host, board.user, board.key_file, port=board.port,
                                known_hosts=board.known_hosts)

        t = new_transport()
        t.run(["mkdir", "-p", "gem-hil-bench"])
        scp_base = ["scp", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                    "-o", f"UserKnownHostsFile={board.known_hosts}", "-i", str(board.key_file),
                    "-P", str(board.port)]

        def scp(i: int) -> None:
            subprocess.run([*scp_base, str(big), f"{board.user}@{board.host}:gem-hil-bench/scp{i}"],
                           check=True, timeout=300)

        def upload(i: int) -> None:
            t._upload(big, f"gem-hil-bench/up{i}")

        def push(i: int) -> None:
            assert not t.push(big, f"gem-hil-bench/push{i}/artifact.bin").skipped

        def push_fresh(i: int) -> None:
            with new_transport() as fresh:
                assert not fresh.push(big, f"gem-hil-bench/fresh{i}/artifact.bin").skipped

        def clean() -> None:
            t.run(["sh", "-c", "rm -rf gem-hil-bench/*"])

        # interleave so drift on a noisy machine hits every method alike
        rows: dict[str, list[float]] = {k: [] for k in ("scp", "upload", "push", "push_fresh")}
        for i in range(n):
            for name, fn in (("scp", scp), ("upload", upload), ("push", push),
                             ("push_fresh", push_fresh)):
                t0 = time.perf_counter()
                fn(i)
                rows[name].append(time.perf_counter() - t0)
            clean()
        assert t.remote_sha256(f"gem-hil-bench/push{n - 1}/artifact.bin") in (None, want)
        t.push(big, "gem-hil-bench/keep/artifact.bin", sha256=want)
        repush, _ = median_of(max(n, 10), lambda i: t.push(big, "gem-hil-bench/keep/artifact.bin",
                                                            sha256=want))
        repush_hash, _ = median_of(n, lambda i: t.push(big, "gem-hil-bench/keep/artifact.bin"))
        rtt, _ = median_of(50, lambda i: t.run(["true"]))
        connect, _ = median_of(n, lambda i: new_transport().run(["true"]))
        clean()
        cipher = t._client.get_transport().remote_cipher if t._client else "?"
        t.close()

    med = {k: statistics.median(v) for k, v in rows.items()}
    mb = size / 1e6
    lines = [
        f"{args.size_mb} MiB file, loopback sshd (OpenSSH {ssh_version()}), median of {n}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, paramiko cipher {cipher}",
        "",
        "| what | median | throughput | vs scp |",
        "|---|---|---|---|",
        f"| OpenSSH `scp` (fresh connection each time) | {med['scp']:.3f} s | "
        f"{mb / med['scp']:.0f} MB/s | 1.00x |",
    ]
    for key, label in (("upload", "SshTransport upload only (`_upload`, SFTP, reused link)"),
                       ("push", "SshTransport.push (sha256 local + on device, reused link)"),
                       ("push_fresh", "SshTransport.push on a fresh connection")):
        lines.append(f"| {label} | {med[key]:.3f} s | {mb / med[key]:.0f} MB/s | "
                     f"{med['scp'] / med[key]:.2f}x |")
    lines += [
        f"| re-push unchanged, hash known (one round trip) | {repush * 1e3:.1f} ms | | |",
        f"| re-push unchanged, hash computed locally first | {repush_hash * 1e3:.1f} ms | | |",
        f"| exec round trip (`run(['true'])`, reused link) | {rtt * 1e3:.2f} ms | | |",
        f"| connect + auth + one command | {connect * 1e3:.1f} ms | | |",
        "",
        "Command: `" + shlex.join(["python", "tests/benchmarks/bench_push.py", *sys.argv[1:]])
        + "` (as root)",
    ]
    table = "\n".join(lines)
    print(table)
    print("\nraw seconds:", {k: [round(x, 3) for x in v] for k, v in rows.items()})
    if not args.no_write:
        write_doc(table)
        print(f"\nwritten to {DOC}")
    return 0


def ssh_version() -> str:
    res = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (res.stderr or res.stdout).split(",")[0].replace("OpenSSH_", "").strip()


def write_doc(table: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
