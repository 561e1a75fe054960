"""Progress of long steps on stderr: a live rich bar on a terminal, plain lines elsewhere.

Why: an artifact build (its training steps) or a QEMU image build takes from
seconds to many minutes, and silence looks like a hang. Three rules:

* stderr only, never stdout: stdout carries results (``gem-hil bench --json``
  prints only JSON there, and scripts parse it).
* A live bar only when stderr is a terminal and ``CI`` is unset; CI logs, pipes
  and pytest's capture get plain lines instead, few enough to read: a counted
  stage prints at its start, at each quarter and at its end, not per step.
* Nothing is printed before the first report, so a cache hit stays silent;
  rich is imported only when a bar is drawn, so commands that never draw one
  do not pay for importing it.

The one API is :func:`task`::

    with progress.task("build tiny-int8") as t:
        t.update("train", done=3, total=40)   # a stage, optionally counted
        t.log("a line above the bar")
        gem_build(..., progress=t)            # t(stage, done, total) is gem's callback

gem never imports this module (gem knows nothing of the harness): its builders
take a plain ``(stage, done, total)`` callback, and a Task is one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

#: a counted stage prints a plain line at 0, 1/4, 2/4, 3/4 and 4/4 of its total
PLAIN_STEPS = 4
_NOT_CI = ("", "0", "false", "no")


def live_allowed(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when a live bar may be drawn: the stream is a terminal and CI is not set."""
    stream = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    if env.get("CI", "").strip().lower() not in _NOT_CI or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Task:
    """One long step shown to a person: a title, the current stage, maybe a count."""

    def __init__(self, title: str, *, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.title = title
        self.stream = sys.stderr if stream is None else stream
        self.live = live_allowed(self.stream) if live is None else live
        self.note = ""
        self.done: int | None = None
        self.total: int | None = None
        self._started: float | None = None
        self._quarter = -1
        self._bar: Any = None  # rich.progress.Progress once live output started
        self._bar_task: Any = None

    # -- reporting --------------------------------------------------------

    def update(self, note: str | None = None, done: int | None = None,
               total: int | None = None) -> None:
        """Enter stage ``note`` (a new note restarts the count) and/or move its count."""
        self._start()
        new_stage = note is not None and note != self.note
        if new_stage:
            self.note, self.done, self.total, self._quarter = note, None, None, -1
        if total is not None:
            self.total = total
        if done is not None:
            self.done = done
        if self.live:
            self._draw()
        else:
            self._plain(new_stage)

    def __call__(self, stage: str, done: int = 0, total: int | None = None) -> None:
        """The ``(stage, done, total)`` callback gem's builders take."""
        self.update(stage, done, total)

    def log(self, message: str) -> None:
        """One line that stays (above the bar when live)."""
        self._start()
        self._line(f"{self.title}: {message}")

    def close(self, failed: bool = False) -> None:
        """End the bar and say how long it took; silent when nothing was reported."""
        if self._started is None:
            return
        elapsed = time.monotonic() - self._started
        if self._bar is not None:
            self._bar.stop()
        self._line(f"{self.title}: {'failed after' if failed else 'done in'} {elapsed:.1f} s")
        self._started = None
        self._bar = None

    # -- output -----------------------------------------------------------

    def _start(self) -> None:
        if self._started is None:
            self._started = time.monotonic()

    def _counted(self) -> str:
        if self.total is None:
            return ""
        return f" {self.done or 0}/{self.total}"

    def _plain(self, new_stage: bool) -> None:
        quarter = -1
        if self.total:
            quarter = min(PLAIN_STEPS, (self.done or 0) * PLAIN_STEPS // self.total)
        if new_stage or quarter > self._quarter:
            self._quarter = max(quarter, self._quarter)
            self._line(f"{self.title}: {self.note}{self._counted()}")

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _draw(self) -> None:
        if self._bar is None:
            from rich import progress as rp
            from rich.console import Console

            self._bar = rp.Progress(rp.SpinnerColumn(),
                                    rp.TextColumn("{task.description}", markup=False),
                                    rp.BarColumn(), rp.MofNCompleteColumn(),
                                    rp.TimeElapsedColumn(),
                                    console=Console(file=self.stream), transient=True)
            self._bar_task = self._bar.add_task(self.title, total=None)
            self._bar.start()
        self._bar.update(self._bar_task, description=f"{self.title}: {self.note}",
                         completed=self.done or 0, total=self.total)


@contextlib.contextmanager
def task(title: str, *, stream: TextIO | None = None, live: bool | None = None) -> Iterator[Task]:
    """Show one long step; ends with 'done in N s' (or 'failed after N s')."""
    t = Task(title, stream=stream, live=live)
    try:
        yield t
    except BaseException:
        t.close(failed=True)
        raise
    t.close()
