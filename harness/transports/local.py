"""The `local` transport: this host is the device.

It is the embedded default so the whole suite runs with no hardware. It keeps
the same contract as a remote transport (argument lists, verified push into a
separate workdir) so that a test passing on `local` exercises the same engine
path a board does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gem.files import cache_root
from harness.errors import CommandTimeout, TransferError
from harness.interrupts import note
from harness.transports.base import (
    KILL_GRACE_S,
    CommandResult,
    Transport,
    command_label,
    sha256_file,
)


def default_home() -> Path:
    """The `local` device's login directory: private to this user, like a home."""
    env = os.environ.get("GEM_HIL_LOCAL_HOME")
    base = Path(env) if env else cache_root() / "local-device"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


class LocalTransport(Transport):
    """Relative device paths resolve under a private home, as they would after
    an SSH login, so profiles use the same workdir on every transport."""

    kind = "local"

    def __init__(self, device_name: str, home: Path | None = None) -> None:
        super().__init__(device_name)
        self.home = home or default_home()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, remote: str) -> Path:
        return self.home / remote  # an absolute remote path stays absolute

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        t0 = time.perf_counter()
        # A new session lets a timeout kill the whole process tree, not just
        # the direct child (the agent may have started runtime threads/helpers).
        # stdin is a pipe this process holds open until the command ends, as an
        # SSH exec channel is: the agent's watchdog reads EOF on it the moment
        # the harness dies, even by SIGKILL, because the kernel closes our end.
        lifeline_r, lifeline_w = os.pipe()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=lifeline_r, env=full_env,
                                    cwd=self._path(cwd) if cwd else self.home,
                                    start_new_session=True)
        except BaseException as exc:
            os.close(lifeline_w)
            if isinstance(exc, FileNotFoundError):
                return CommandResult(argv, 127, "", f"{exc}", time.perf_counter() - t0)
            raise
        finally:
            os.close(lifeline_r)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc, grace_s=0)
            raise CommandTimeout(
                f"{self.device_name}: command {argv[:3]}... did not finish within {timeout_s} s "
                "and was killed; raise [run] timeout_s in the profile if the device is just slow"
            ) from None
        except BaseException as exc:  # Ctrl-C, SIGTERM (harness.interrupts): stop it, go on
            how = _kill_group(proc, KILL_GRACE_S)
            note(exc, f"stopped {command_label(argv)} ({how} its process group {proc.pid})")
            raise
        finally:
            os.close(lifeline_w)
        return CommandResult(argv, proc.returncode, out.decode("utf-8", "replace"),
                             err.decode("utf-8", "replace"), time.perf_counter() - t0)

    def remote_sha256(self, remote: str) -> str | None:
        path = self._path(remote)
        if not path.is_file():
            return None
        return sha256_file(path)

    def _upload(self, local: Path, remote_tmp: str) -> None:
        try:
            shutil.copyfile(local, self._path(remote_tmp))
        except OSError as exc:
            raise TransferError(f"{self.device_name}: cannot copy {local} to {remote_tmp}: "
                                f"{exc.strerror}") from None

    def mkdir(self, remote_dir: str) -> None:
        self._path(remote_dir).mkdir(parents=True, exist_ok=True)

    def _download(self, remote: str, local_tmp: Path) -> None:
        try:
            shutil.copyfile(self._path(remote), local_tmp)
        except OSError as exc:
            raise TransferError(f"{self.device_name}: cannot pull {remote!r}: "
                                f"{exc.strerror}") from None

    def close(self) -> None:
        pass


def _kill_group(proc: subprocess.Popen, grace_s: float) -> str:
    """SIGTERM the command's process group, SIGKILL it after grace_s; reap it.

    Returns what was done, for the message. The group id is the child's PID
    (start_new_session), so this never reaches a process we did not start.
    """
    how = "killed"
    try:
        if grace_s > 0:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
                how = "terminated"
            except subprocess.TimeoutExpired:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group's leader is gone and its PID was reused
        how = "could not signal"
    proc.communicate()
    return how
