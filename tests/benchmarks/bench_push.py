"""Verified push over SSH against OpenSSH scp, like with like.

Run as root (it starts its own loopback sshd, tests/support/sshd_board.py, as the
integration tests do):

    python tests/benchmarks/bench_push.py [--size-mb 64] [--repeat 9] [--write-docs]

What is compared, and why so:

* The same cipher on both sides: the one paramiko negotiates (FAST_CIPHERS in
  harness/transports/ssh.py puts AES-GCM first) is handed to scp with ``-c``.
* Connection reused on both sides: our SshTransport keeps one connection for
  the session, so scp gets one too: an OpenSSH ControlMaster started once,
  every scp going through its ControlPath.
* Connection fresh on both sides: a new SshTransport (connect, authenticate,
  push, close) against a plain scp that pays its own handshake.
* Upload alone against verified push: "upload only" is the same exec-channel
  stream into the same device-side writer with its hashing taken out (no
  check, no verification); "verified push" is ``SshTransport.push`` with the
  sha256 known from the manifest, as the engine calls it: check, stream while
  the device hashes, rename. Their difference is what verification costs.

All methods run interleaved (one of each per round, the starting method
rotating each round) after one warm-up round, so drift on a shared machine
hits all alike. Each row prints the median and min-max of its rounds; "vs
scp" is the median (min-max) of the per-round ratios against scp with the
same connection mode. Nothing is written unless --write-docs is given; then
the table replaces the one between the bench_push markers in docs/ssh.md.

``--one-push FILE --profile P.toml [--sha256 HEX]`` connects with profile P,
pushes FILE once to a new name (sha256 computed locally unless given, as a
manifest gives it) and exits: the whole process a user runs for a one-off
push, to time from outside against one scp.
"""

from __future__ import annotations

import argparse
import os
import platform
import posixpath
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

from tests.benchmarks.goals import judge  # noqa: E402

DOC = REPO / "docs" / "ssh.md"
BEGIN, END = "<!-- bench_push:begin -->", "<!-- bench_push:end -->"
WORKDIR = "gem-hil-bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=9, help="timed rounds (default 9)")
    ap.add_argument("--write-docs", action="store_true",
                    help="also write the table into docs/ssh.md (default: print only)")
    ap.add_argument("--one-push", type=Path, metavar="FILE",
                    help="push FILE once with --profile and exit (for whole-process timing)")
    ap.add_argument("--profile", type=Path, help="device profile for --one-push")
    ap.add_argument("--sha256", help="for --one-push: the file's sha256, as a manifest gives it")
    args = ap.parse_args()
    if args.one_push:
        return one_push(args.one_push, args.profile, args.sha256, ap)
    if args.repeat < 1 or args.size_mb < 1:
        ap.error("--repeat and --size-mb must be at least 1")

    from tests.support.sshd_board import SshdBoard

    reason = SshdBoard.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gem-hil-bench-") as tmp, SshdBoard() as board:
        table = run_bench(board, Path(tmp), args)
    print(table)
    if args.write_docs:
        write_doc(table)
        print(f"\nwritten to {DOC}")
    return 1 if ": FAIL)" in table else 0


def one_push(local: Path, profile: Path | None, sha256: str | None,
             ap: argparse.ArgumentParser) -> int:
    if profile is None:
        ap.error("--one-push needs --profile (a device profile with an [ssh] table)")
    from harness.profiles import parse_profile
    from harness.transports.ssh import SshTransport

    with SshTransport.from_profile(parse_profile(profile)) as t:
        remote = f"{WORKDIR}/one-push/{os.getpid()}/{local.name}"
        res = t.push(local, remote, sha256=sha256)
        t.run(["rm", "-rf", "--", posixpath.dirname(remote)])
    print(f"pushed {res.size_bytes} bytes in {res.duration_s:.3f} s (sha256 {res.sha256[:12]})")
    return 0


def run_bench(board, tmp: Path, args: argparse.Namespace) -> str:  # noqa: ANN001
    from harness.transports.base import sha256_file
    from harness.transports.ssh import _STREAM_PY, SshTransport, _read_answer

    size = args.size_mb << 20
    # "upload only": the very stream and device writer of a push, hashing taken out
    writer_only = _STREAM_PY.replace("        h.update(b)\n", "")
    assert writer_only != _STREAM_PY, "the device writer changed: update bench_push.py"
    big = tmp / "artifact.bin"
    big.write_bytes(os.urandom(size))
    want = sha256_file(big)

    def new_transport() -> SshTransport:
        return SshTransport("bench", board.host, board.user, board.key_file, port=board.port,
                            known_hosts=board.known_hosts)

    t = new_transport()
    t.run(["mkdir", "-p", WORKDIR])
    tr = t._client.get_transport()
    cipher, mac = tr.remote_cipher, tr.remote_mac
    kex = paramiko_kex(tr)
    ssh_opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={board.known_hosts}", "-o", "IdentitiesOnly=yes",
                "-i", str(board.key_file), "-o", "Compression=no", "-c", cipher,
                "-o", f"KexAlgorithms={kex}"]
    if "gcm" not in cipher and "poly1305" not in cipher:
        ssh_opts += ["-m", mac]  # AEAD ciphers carry their own MAC
    dest = f"{board.user}@{board.host}"
    control = tmp / "cm.sock"
    master = subprocess.Popen(["ssh", *ssh_opts, "-p", str(board.port), "-N",
                               "-o", "ControlMaster=yes", "-o", f"ControlPath={control}",
                               "-o", "ControlPersist=no", dest])
    try:
        wait_for_master(ssh_opts, control, board.port, dest)
        scp_reused_opts = ["-o", "ControlMaster=no", "-o", f"ControlPath={control}"]
        scp_fresh_opts = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]

        def scp(opts: list[str], name: str) -> None:
            subprocess.run(["scp", "-q", *ssh_opts, *opts, "-P", str(board.port), str(big),
                            f"{dest}:{WORKDIR}/{name}"], check=True, timeout=300)

        def upload_only(i: int) -> None:
            chan = t._open_channel(60)
            try:
                chan.exec_command(shlex.join(["python3", "-I", "-S", "-c", writer_only,
                                              f"{WORKDIR}/up{i}.part-x", str(size),
                                              f"{WORKDIR}/up{i}", f"{WORKDIR}/.up{i}.rec"]))
                with open(big, "rb", buffering=0) as src:
                    assert t._stream_file(chan, src) == size
                chan.sendall(b"commit " + b"0" * 64 + b"\n")
                chan.shutdown_write()
                out, err, rc = _read_answer(chan, time.monotonic() + 60)
                assert rc == 0 and out.endswith("committed\n"), (out, err)
            finally:
                chan.close()

        def push(i: int) -> None:
            assert not t.push(big, f"{WORKDIR}/push{i}/artifact.bin", sha256=want).skipped

        def push_fresh(i: int) -> None:
            with new_transport() as fresh:
                assert not fresh.push(big, f"{WORKDIR}/fresh{i}/artifact.bin",
                                      sha256=want).skipped

        methods: dict[str, Callable[[int], None]] = {
            "scp_reused": lambda i: scp(scp_reused_opts, f"scp-r{i}"),
            "upload": upload_only,
            "push": push,
            "scp_fresh": lambda i: scp(scp_fresh_opts, f"scp-f{i}"),
            "push_fresh": push_fresh,
        }
        names = list(methods)
        rows: dict[str, list[float]] = {k: [] for k in names}
        for rnd in range(args.repeat + 1):  # round 0 is the warm-up
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                t0 = time.perf_counter()
                methods[name](rnd)
                elapsed = time.perf_counter() - t0
                if rnd:
                    rows[name].append(elapsed)
            t.run(["sh", "-c", f"rm -rf {WORKDIR}/*"])
        t.push(big, f"{WORKDIR}/keep/artifact.bin", sha256=want)
        assert t.remote_sha256(f"{WORKDIR}/keep/artifact.bin") == want
        extra = {
            "repush": timed(max(args.repeat, 20), lambda: t.push(
                big, f"{WORKDIR}/keep/artifact.bin", sha256=want)),
            "repush_hash": timed(args.repeat, lambda: t.push(
                big, f"{WORKDIR}/keep/artifact.bin")),
            "rtt": timed(50, lambda: t.run(["true"])),
            "connect": timed(args.repeat, lambda: new_transport().run(["true"])),
        }
        t.run(["rm", "-rf", WORKDIR])
    finally:
        master.terminate()
        master.wait(timeout=10)
        t.close()
    return render(rows, extra, args, cipher, kex)


def paramiko_kex(tr) -> str:  # noqa: ANN001
    """The key exchange paramiko agrees on with this OpenSSH: its first choice
    that OpenSSH implements (paramiko clears its kex engine after the
    handshake). A fresh scp is pinned to it too: OpenSSH 9's default,
    sntrup761x25519, costs ~0.2 s more per handshake here."""
    offered = set(subprocess.run(["ssh", "-Q", "kex"], capture_output=True, text=True,
                                 check=True).stdout.split())
    return next(k for k in tr.preferred_kex if k in offered)


def wait_for_master(ssh_opts: list[str], control: Path, port: int, dest: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        res = subprocess.run(["ssh", *ssh_opts, "-p", str(port), "-o", f"ControlPath={control}",
                              "-O", "check", dest], capture_output=True, timeout=10)
        if res.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the OpenSSH ControlMaster on {control} did not come up")


def timed(n: int, fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def render(rows: dict[str, list[float]], extra: dict[str, list[float]],
           args: argparse.Namespace, cipher: str, kex: str) -> str:
    mb = (args.size_mb << 20) / 1e6
    med = {k: statistics.median(v) for k, v in rows.items()}

    def spread(v: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
        return f"{min(v) * scale:{fmt}}–{max(v) * scale:{fmt}}"

    def vs(key: str, ref: str) -> str:
        ratios = [a / b for a, b in zip(rows[key], rows[ref], strict=True)]
        return f"{statistics.median(ratios):.2f}x ({spread(ratios, fmt='.2f')})"

    labels = {
        "scp_reused": ("reused", "OpenSSH `scp`, through a ControlMaster", "scp_reused"),
        "upload": ("reused", "SshTransport upload only (same stream and device writer, "
                   "hashing taken out)", "scp_reused"),
        "push": ("reused", "**SshTransport.push, verified** (hash while streaming, rename)",
                 "scp_reused"),
        "scp_fresh": ("fresh", "OpenSSH `scp`, own handshake", "scp_fresh"),
        "push_fresh": ("fresh", "new SshTransport: connect + verified push + close",
                       "scp_fresh"),
    }
    lines = [
        f"{args.size_mb} MiB file, loopback sshd (OpenSSH {ssh_version()}), cipher {cipher} "
        f"and kex {kex} on both sides, {args.repeat} interleaved rounds after a warm-up, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "",
        "| connection | what | median | min–max | MB/s | vs scp, same connection mode |",
        "|---|---|---|---|---|---|",
    ]
    for key, (mode, label, ref) in labels.items():
        ratio = "1.00x" if key == ref else vs(key, ref)
        lines.append(f"| {mode} | {label} | {med[key]:.3f} s | {spread(rows[key])} s | "
                     f"{mb / med[key]:.0f} | {ratio} |")
    ms = {k: statistics.median(v) * 1e3 for k, v in extra.items()}
    lines += [
        "",
        "| also measured (reused connection unless said) | median | min–max |",
        "|---|---|---|",
        f"| re-push unchanged, sha256 from the manifest (one round trip) | {ms['repush']:.1f} ms "
        f"| {spread(extra['repush'], 1e3, '.1f')} ms |",
        f"| re-push unchanged, sha256 computed locally first | {ms['repush_hash']:.1f} ms | "
        f"{spread(extra['repush_hash'], 1e3, '.1f')} ms |",
        f"| exec round trip (`run(['true'])`) | {ms['rtt']:.2f} ms | "
        f"{spread(extra['rtt'], 1e3, '.2f')} ms |",
        f"| fresh connect + auth + one command | {ms['connect']:.1f} ms | "
        f"{spread(extra['connect'], 1e3, '.1f')} ms |",
        "",
        "| goal | measured | result |",
        "|---|---|---|",
        *[f"| {what} | {shown} | {judge(value, goal, direction, unit)} |"
          for what, shown, value, goal, direction, unit in goals(rows, extra)],
        "",
        "Command: `" + shlex.join(["python", "tests/benchmarks/bench_push.py",
                                   *[a for a in sys.argv[1:] if a != "--write-docs"]])
        + "` (as root)",
    ]
    return "\n".join(lines)


def goals(rows: dict[str, list[float]], extra: dict[str, list[float]]
          ) -> list[tuple[str, str, float, float, str, str]]:
    """(goal, figure shown, value, limit, direction, unit) of docs/performance.md's SSH goals."""
    ratio = statistics.median(a / b for a, b in zip(rows["push"], rows["scp_reused"],
                                                     strict=True))
    repush_ms = statistics.median(extra["repush"]) * 1e3
    return [("verified push vs scp, both reused (median of per-round ratios)",
             f"{ratio:.2f}x", ratio, 1.0, "max", "x"),
            ("re-push of an unchanged artifact", f"{repush_ms:.1f} ms", repush_ms, 50.0, "max",
             " ms")]


def ssh_version() -> str:
    res = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (res.stderr or res.stdout).split(",")[0].replace("OpenSSH_", "").strip()


def write_doc(table: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} markers; add them where the table "
                         "belongs")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
