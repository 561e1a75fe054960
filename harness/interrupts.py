"""SIGINT and SIGTERM as exceptions, so a cancelled run still cleans up the device.

CI cancels a job with SIGTERM, a person with Ctrl-C. Python's default for
SIGTERM is to die on the spot: no ``finally`` runs, the agent keeps running on
the board and no record says why the run ended. Inside :func:`signals_as_exceptions`
both signals raise :class:`Interrupted` instead, which unwinds through the
transports (they stop the command's process group on the device, see
``harness.transports.local`` / ``ssh``) and the bench engine (it writes a failure
record), and the CLI turns it into one line and exit code 128 + signal number.

:class:`Interrupted` is a KeyboardInterrupt, so any code that cleans up on Ctrl-C
(``except KeyboardInterrupt``) also cleans up on SIGTERM, and code that must not
swallow a cancellation (``except Exception``) does not.

What the unwinding did is attached as exception notes (:func:`note`), so the
one line the user reads says what was stopped and where the record is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals a run treats as "stop now, but clean up first".
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A signal arriving this many times in a row stops the process without cleanup.
FORCE_AFTER = 3


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; carries which one (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signum_of(exc: BaseException) -> int:
    """The signal behind an interruption: a bare KeyboardInterrupt is SIGINT."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    """128 + signal number, as a shell reports a process ended by that signal."""
    return 128 + int(signum_of(exc))


def note(exc: BaseException, text: str) -> None:
    """Add what the unwinding did (``stopped the agent ...``, ``record: ...``)."""
    exc.add_note(text)


def describe(exc: BaseException) -> str:
    """One line: ``interrupted by SIGTERM while running the agent on X: <notes>``."""
    text = f"interrupted by {signal_name(signum_of(exc))}"
    during = getattr(exc, "during", None)
    if during:
        text += f" while {during}"
    notes = [n for n in getattr(exc, "__notes__", ()) if n]
    if notes:
        text += ": " + "; ".join(notes)
    return text


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handled_by(handler) -> Iterator[None]:
    """Inside: handler handles the stop signals; after: the old handlers again.

    Outside the main thread (where Python cannot set handlers) nothing changes.
    A handler installed outside Python (getsignal gives None) cannot be put
    back, so that signal is left alone.
    """
    if not _in_main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS
           if signal.getsignal(s) is not None}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_as_exceptions(stream=None) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise Interrupted; the old handlers come back after.

    Only the FIRST signal raises. Cleanup after it (stopping the agent on the
    device, undoing conditioning, writing the record) is bounded by the
    transports' own timeouts, so a second signal is reported on ``stream`` and
    otherwise ignored rather than cutting that cleanup short; the
    FORCE_AFTER-th one exits at once (``os._exit(128 + signal)``), for a person
    who really wants out. Outside the main thread (where Python cannot set
    handlers) this does nothing.
    """
    out = stream or sys.stderr
    count = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        if count == 1:
            raise Interrupted(signum)
        if count >= FORCE_AFTER:
            print(f"gem-hil: {signal_name(signum)} again: exiting without cleanup; the "
                  "agent stops itself when it notices the harness is gone", file=out,
                  flush=True)
            os._exit(128 + signum)
        print(f"gem-hil: {signal_name(signum)} again: still stopping the run and cleaning up "
              "the device (bounded); send it once more to exit at once", file=out, flush=True)

    with _handled_by(handler):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals until the block ends, then deliver them as if they arrived then.

    For the few steps that must not be cut in half once the agent has finished:
    writing the record of what was measured. The handlers in force before are
    the ones that finally see the signal (Interrupted, KeyboardInterrupt, or the
    default action), so behaviour outside stays exactly as it was.
    """
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        with _handled_by(hold):
            yield
    finally:
        for signum in dict.fromkeys(pending):  # the handlers from before are back: they see it
            signal.raise_signal(signum)
