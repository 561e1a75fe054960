"""The contract every transport (local, ssh, adb, ...) fulfils.

The engine only ever talks to a device through these few calls, so a board
reached over SSH and this host behave the same: only the profile differs.
Commands are argument lists; a transport that goes through a shell quotes them
itself (``shlex.join``), so no caller ever concatenates user input into a
command string.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gem.files import sha256_file  # the one implementation; transports import it here
from harness.errors import TransferError

CHUNK_BYTES = 1 << 20
#: How long a stopped command gets between SIGTERM and SIGKILL, on every transport.
KILL_GRACE_S = 2.0


def short_command(argv: Sequence[str], limit: int = 200) -> str:
    """A command for a message: quoted as it ran, cut to a readable length."""
    text = shlex.join(argv)
    return "`" + (text if len(text) <= limit else text[:limit] + " ...") + "`"


def command_label(argv: Sequence[str]) -> str:
    """What a stopped command is called in a message: the agent by name."""
    if any(a.endswith("gem_agent.py") for a in argv):
        return "the agent"
    return short_command(argv, 60)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr.splitlines()[-lines:])


@dataclass(frozen=True)
class PushResult:
    """Outcome of a push: where the file is, its verified hash, and whether
    the upload was skipped because the device already held that content."""

    remote: str
    sha256: str
    size_bytes: int
    skipped: bool
    duration_s: float


def safe_local_name(local_dir: Path, remote: str) -> Path:
    """Where a pulled file may land: inside local_dir, never outside it.

    The device chooses file names we pull; a name like ``../../.bashrc`` or an
    absolute path must not escape the folder the user gave us.
    """
    name = posixpath.basename(remote.rstrip("/"))
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise TransferError(f"refusing to pull {remote!r}: its file name is not a plain name")
    target = (local_dir / name).resolve()
    if target.parent != local_dir.resolve():
        raise TransferError(f"refusing to pull {remote!r}: it would land outside {local_dir}")
    return target


class Transport(ABC):
    """One open link to one device, reused for the whole session."""

    #: short kind name as used in profiles ("local", "ssh", "adb")
    kind: str = "abstract"

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run argv on the device and wait for it.

        Raises CommandTimeout when it does not finish in timeout_s (the
        command is killed); a non-zero exit is NOT an exception: look at rc.
        """

    @abstractmethod
    def remote_sha256(self, remote: str) -> str | None:
        """sha256 of a file on the device (lower-case hex), or None when it does not exist."""

    @abstractmethod
    def _upload(self, local: Path, remote_tmp: str) -> str | None:
        """Copy bytes to remote_tmp; its folder exists unless ``upload_makes_parent``.

        Returns the sha256 the DEVICE computed over the bytes as they arrived
        and were written, when the transport can hash while it streams (SSH):
        that spares a second read of the whole file on the device. Returns
        None when it cannot; push then hashes remote_tmp on the device.
        """

    @abstractmethod
    def _download(self, remote: str, local_tmp: Path) -> None:
        """Copy the device file remote into local_tmp (its folder exists).

        Raises TransferError for a file the device cannot give. Whether the
        bytes arrived intact is pull's business, not this method's.
        """

    def pull(self, remote: str, local_dir: Path) -> Path:
        """Copy a device file into local_dir (see safe_local_name), verified.

        The device hashes the file first; the copy lands as ``NAME.part``, is
        hashed here and only then renamed, so a pull that arrives corrupted
        (a flaky USB link, a file rewritten while it was read, a full disk
        here) is an error naming both hashes and leaves nothing behind,
        on every transport alike.
        """
        local_dir = Path(local_dir)
        target = safe_local_name(local_dir, remote)  # refuse before any byte moves
        local_dir.mkdir(parents=True, exist_ok=True)
        want = self.remote_sha256(remote)
        if want is None:
            raise TransferError(f"{self.device_name}: cannot pull {remote!r}: no such file on "
                                "the device")
        tmp = target.with_name(target.name + ".part")
        try:
            self._download(remote, tmp)
            got = sha256_file(tmp)
            if got != want:
                raise TransferError(f"{self.device_name}: pulling {remote!r}: it arrived "
                                    f"corrupted (sha256 here {got} != on the device {want}); "
                                    "nothing was kept, pull again")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    @abstractmethod
    def close(self) -> None:
        """Release the link. Safe to call twice."""

    # -- shared behaviour -------------------------------------------------

    def mkdir(self, remote_dir: str) -> None:
        res = self.run(["mkdir", "-p", "--", remote_dir], timeout_s=30)
        if not res.ok:
            raise TransferError(
                f"{self.device_name}: cannot create {remote_dir!r} on the device: "
                f"{res.stderr.strip() or res.stdout.strip()}"
            )

    #: True when _upload creates the folder of remote_tmp itself, which saves
    #: push a round trip for mkdir (the SSH upload script does it on the way).
    upload_makes_parent: bool = False

    def push(self, local: Path, remote: str, sha256: str | None = None) -> PushResult:
        """Upload local to remote, verified by sha256 on the device.

        ``sha256`` is the local file's hash when the caller knows it (the
        artifact manifest records it), which spares reading the file here.
        Skipped (one round trip) when the device already has that content.
        The upload goes to a temporary name and is renamed only after the
        device's hash of what arrived matches, so an interrupted or corrupted
        transfer never leaves a file that looks complete; on a mismatch the
        partial file is removed.
        """
        t0 = time.perf_counter()
        local = Path(local)
        want = (sha256 or sha256_file(local)).lower()
        size = local.stat().st_size
        if self.remote_sha256(remote) == want:
            return PushResult(remote, want, size, True, time.perf_counter() - t0)
        parent = posixpath.dirname(remote)
        if parent and not self.upload_makes_parent:
            self.mkdir(parent)
        # unique per upload, not per content: a late cleanup by an earlier upload
        # of the same file (its link dropped, the board removes its .part) must
        # never hit this one's temporary file
        tmp = f"{remote}.part-{want[:12]}-{secrets.token_hex(4)}"
        got = self._upload(local, tmp)
        if got is None:  # this transport cannot hash while streaming: read it back
            got = self.remote_sha256(tmp)
        if got != want:
            self._discard(tmp)
            raise TransferError(
                f"{self.device_name}: {local.name} arrived corrupted at {remote!r}: "
                f"sha256 on device {got} != local {want}; the partial file was removed, "
                "push again (check the link and the device's free space)"
            )
        self._commit(tmp, remote, want)
        return PushResult(remote, want, size, False, time.perf_counter() - t0)

    def _discard(self, remote_tmp: str) -> None:
        """Remove a partial upload (best effort: the error that led here matters more)."""
        self.run(["rm", "-f", "--", remote_tmp], timeout_s=30)

    def _commit(self, remote_tmp: str, remote: str, sha256: str) -> None:
        """Give a verified upload its final name (an atomic rename on the device)."""
        res = self.run(["mv", "-f", "--", remote_tmp, remote], timeout_s=30)
        if not res.ok:
            raise TransferError(
                f"{self.device_name}: cannot rename {remote_tmp!r} to {remote!r}: "
                f"{res.stderr.strip()}"
            )

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_sha256sum(device_name: str, remote: str, res: CommandResult) -> str | None:
    """Read `sha256sum FILE` output; None when the file is missing."""
    if res.rc != 0:
        text = (res.stderr + res.stdout).lower()
        if "no such file" in text or "not found" in text or "cannot open" in text:
            return None
        raise TransferError(
            f"{device_name}: sha256sum {remote!r} failed (rc={res.rc}): {res.stderr.strip()}; "
            "the device needs coreutils/toybox sha256sum"
        )
    first = res.stdout.strip().split()
    if not first or len(first[0]) != 64:
        raise TransferError(f"{device_name}: unexpected sha256sum output {res.stdout!r}")
    return first[0].lower()
