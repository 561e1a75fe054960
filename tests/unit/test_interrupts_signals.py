"""harness.interrupts: stop signals as exceptions, and what the local transport does then."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness import interrupts
from harness.transports.local import LocalTransport


def _signal_soon(sig: int, delay_s: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay_s, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


def test_sigterm_becomes_interrupted_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupts.Interrupted) as exc, interrupts.signals_as_exceptions():
        _signal_soon(signal.SIGTERM)
        time.sleep(10)
    assert exc.value.signum == signal.SIGTERM
    assert isinstance(exc.value, KeyboardInterrupt)  # Ctrl-C cleanup code runs for it too
    assert interrupts.exit_code(exc.value) == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_signal_does_not_cut_the_cleanup_short():
    err = io.StringIO()
    cleaned = False
    with pytest.raises(interrupts.Interrupted), interrupts.signals_as_exceptions(err):
        try:
            _signal_soon(signal.SIGINT, 0.1)
            time.sleep(10)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # impatient user, mid-cleanup
            time.sleep(0.1)
            cleaned = True
    assert cleaned
    assert "still stopping" in err.getvalue()


def test_deferred_delivers_the_signal_after_the_block():
    done = []
    with pytest.raises(interrupts.Interrupted), interrupts.signals_as_exceptions():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            done.append("record written")
    assert done == ["record written"]


def test_describe_is_one_line_with_what_was_done():
    exc = interrupts.Interrupted(signal.SIGTERM)
    exc.during = "running the agent on pi4"  # type: ignore[attr-defined]
    interrupts.note(exc, "stopped the agent (killed its process group 42 on the device)")
    interrupts.note(exc, "record: r.json")
    assert interrupts.describe(exc) == (
        "interrupted by SIGTERM while running the agent on pi4: stopped the agent (killed its "
        "process group 42 on the device); record: r.json")
    assert interrupts.describe(KeyboardInterrupt()) == "interrupted by SIGINT"


def test_local_transport_stops_the_process_group_when_interrupted(tmp_path: Path):
    t = LocalTransport("local", home=tmp_path)
    pid_file = tmp_path / "child.pid"
    with pytest.raises(interrupts.Interrupted) as exc, interrupts.signals_as_exceptions():
        _signal_soon(signal.SIGTERM, 0.5)
        t.run(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], timeout_s=60)
    child = int(pid_file.read_text())
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    assert "process group" in interrupts.describe(exc.value)


def test_local_commands_get_a_held_stdin_that_closes_after(tmp_path: Path):
    """stdin is an open pipe while the command runs (the agent's lifeline), not /dev/null."""
    t = LocalTransport("local", home=tmp_path)
    res = t.run(["sh", "-c", "test -p /dev/stdin && echo pipe"], timeout_s=30)
    assert res.stdout.strip() == "pipe"
