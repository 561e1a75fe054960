"""A campaign: every device of the inventory at once, one process each.

The parent only starts, watches and reaps: the device processes do the
work and write the store themselves, so the parent dying loses no record.
A device process that crashes or hangs past device_timeout_s is stopped
(SIGTERM, then SIGKILL) and recorded as that device's failure, and its
lease is released, so the next campaign does not wait out the expiry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.cli import ExitCode
from harness.farm import leases
from harness.farm.inventory import Inventory, this_host
from harness.history.store import HistoryStore
from harness.plan import new_run_id

KILL_GRACE_S = 15.0


@dataclass
class DeviceProgress:
    """What the live display shows of one device."""

    name: str
    stage: str = "starting"
    health: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    exit_code: int | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def verdict(self) -> str:
        if self.ended is None:
            return "running"
        verdicts = [r.get("verdict") for r in self.records]
        if self.failures or "error" in verdicts:
            return "error"
        if "fail" in verdicts:
            return "fail"
        if not verdicts:
            return "error"
        return "pass" if all(v == "pass" for v in verdicts) else "inconclusive"


def new_campaign_id(name: str) -> str:
    return f"{name}-{new_run_id()}"


def device_argv(inv: Inventory, device: str, campaign: str, history: str,
                holder: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "harness.farm.device_run", "--inventory", str(inv.path),
            "--device", device, "--campaign", campaign, "--history", history]
    return argv + (["--holder", holder] if holder else [])


class Campaign:
    def __init__(self, inv: Inventory, store: HistoryStore, history_url: str,
                 campaign_id: str | None = None, devices: list[str] | None = None) -> None:
        self.inv, self.store, self.history_url = inv, store, history_url
        self.id = campaign_id or new_campaign_id(inv.farm.name)
        entries = inv.for_host(None)
        if devices:
            entries = [inv.device(d) for d in devices]
        self.entries = entries
        self.progress = {e.name: DeviceProgress(e.name) for e in entries}
        self.folder = inv.report_root / self.id
        self._lock = threading.Lock()

    def run(self, display: Any = None) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store.start_campaign(self.id, self.inv.farm.name, str(self.inv.path), this_host())
        self.store.ensure_devices([e.name for e in self.entries])
        procs: dict[str, subprocess.Popen] = {}
        readers = []
        status = "finished"
        try:
            self.prebuild(display)
            for e in self.entries:
                dev_folder = self.folder / e.name
                dev_folder.mkdir(parents=True, exist_ok=True)
                holder = f"{this_host()}:campaign:{self.id}:{e.name}"
                logf = open(dev_folder / "device.log", "ab")  # noqa: SIM115 (closed by reaper)
                p = subprocess.Popen(device_argv(self.inv, e.name, self.id, self.history_url,
                                                 holder),
                                     stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=_child_env())
                logf.close()
                procs[e.name] = p
                t = threading.Thread(target=self._read, args=(e.name, p.stdout), daemon=True)
                t.start()
                readers.append(t)
            self._wait(procs, display)
        except KeyboardInterrupt:
            status = "interrupted"
            for p in procs.values():
                _signal(p, signal.SIGTERM)
            self._wait(procs, display, timeout_s=KILL_GRACE_S * 2)
            raise
        finally:
            for t in readers:
                t.join(5)
            self._reap(procs)
            self.store.finish_campaign(self.id, status)
            if self.inv.farm.retention_days > 0:
                self.store.prune_samples(self.inv.farm.retention_days)
            self.write_summary()
        verdicts = {p.verdict for p in self.progress.values()}
        if verdicts & {"fail", "error"}:
            return ExitCode.FAIL
        return ExitCode.PASS if verdicts <= {"pass"} else ExitCode.INCONCLUSIVE

    def prebuild(self, display: Any = None) -> None:
        """Build (or find in the cache) each artifact once, before the devices start:
        eight boards of one variant need one build, not eight racing ones. A build
        that fails here is left to the device processes, which record it."""
        from harness.artifacts import build_artifact
        from harness.errors import HarnessError
        from harness.farm.inventory import options_for
        from harness.plan import make_plan

        wanted = {}
        for e in self.entries:
            for v in list(e.variants) or [None]:
                try:
                    plan = make_plan(options_for(self.inv, e, v), run_id=self.id)
                except HarnessError:
                    continue  # the device process records it
                wanted[(plan.model, plan.variant, plan.fmt)] = plan.artifact_cache
        for (model, variant, fmt), cache in sorted(wanted.items(), key=lambda kv: kv[0]):
            for p in self.progress.values():
                p.stage = f"building {model}-{variant} ({fmt}) once for the campaign"
            if display is not None:
                display(self)
            try:
                build_artifact(model, variant, fmt, cache)
            except HarnessError:
                pass

    def _read(self, name: str, stream: Any) -> None:
        prog = self.progress[name]
        for line in stream:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                kind = ev.get("event")
                if kind == "stage":
                    prog.stage = (f"[{ev['variant']}] " if ev.get("variant") else "") + ev["text"]
                elif kind == "health":
                    prog.health = ev.get("health", "")
                elif kind == "record":
                    prog.records.append(ev)
                    prog.stage = f"{ev.get('variant')}: {ev.get('verdict')}"
                elif kind == "failure":
                    prog.failures.append(ev)
                    prog.stage = f"failed: {ev.get('reason', '')[:80]}"

    def _wait(self, procs: dict[str, subprocess.Popen], display: Any,
              timeout_s: float | None = None) -> None:
        limit = timeout_s or self.inv.farm.device_timeout_s
        start = time.monotonic()
        while True:
            running = 0
            for name, p in procs.items():
                prog = self.progress[name]
                if p.poll() is None:
                    running += 1
                    if time.monotonic() - start > limit and prog.ended is None:
                        self._timeout(name, p)
                elif prog.ended is None:
                    prog.ended, prog.exit_code = time.monotonic(), p.returncode
            if display is not None:
                display(self)
            if not running:
                return
            time.sleep(0.2)

    def _timeout(self, name: str, p: subprocess.Popen) -> None:
        _signal(p, signal.SIGTERM)
        try:
            p.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait(10)
        reason = (f"device process stopped after device_timeout_s "
                  f"{self.inv.farm.device_timeout_s:g} s")
        self.store.add_failure(name, "run", "timeout", reason, self.id,
                               log_path=self.folder / name / "device.log")
        self.progress[name].failures.append({"stage": "run", "kind": "timeout",
                                             "reason": reason})

    def _reap(self, procs: dict[str, subprocess.Popen]) -> None:
        """A process that died without saying so is a failure; its lease is freed."""
        for name, p in procs.items():
            if p.poll() is None:
                _signal(p, signal.SIGKILL)
                p.wait(10)
            prog = self.progress[name]
            if prog.ended is None:
                prog.ended, prog.exit_code = time.monotonic(), p.returncode
            if p.returncode not in (0, 1, 2, 3) and not prog.failures:
                reason = f"device process ended with exit code {p.returncode} without a record"
                self.store.add_failure(name, "run", "crashed", reason, self.id,
                                       log_path=self.folder / name / "device.log")
                prog.failures.append({"stage": "run", "kind": "crashed", "reason": reason})
            # a process killed while holding its lease: free it now, not at its expiry
            if leases.release(self.store, name, f"{this_host()}:campaign:{self.id}:{name}"):
                prog.stage += " (lease released by the campaign)"

    def write_summary(self) -> Path:
        out = {"campaign": self.id, "inventory": str(self.inv.path),
               "devices": {n: {"verdict": p.verdict, "health": p.health,
                               "exit_code": p.exit_code, "elapsed_s": round(p.elapsed_s, 2),
                               "records": p.records, "failures": p.failures}
                           for n, p in self.progress.items()}}
        path = self.folder / "campaign.json"
        path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        return path


def _signal(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # its own session: the process and anything it started
    except (ProcessLookupError, PermissionError):
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# -- the live display ------------------------------------------------------------

class LiveTable:
    """rich's Live table on a terminal; one line per change elsewhere (CI logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = None
        self._last: dict[str, str] = {}
        if self.stream.isatty() and os.environ.get("TERM") != "dumb":
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=self.stream), refresh_per_second=4,
                             transient=False)
            self.live.start()

    def __call__(self, campaign: Campaign) -> None:
        if self.live is not None:
            self.live.update(self._table(campaign))
            return
        for name, p in campaign.progress.items():
            line = f"{p.stage} [{p.verdict}]" if p.ended else p.stage
            if self._last.get(name) != line:
                self._last[name] = line
                print(f"farm: {name}: {line}", file=self.stream, flush=True)

    def _table(self, campaign: Campaign) -> Any:
        from rich.table import Table

        t = Table(title=f"campaign {campaign.id}")
        for col in ("device", "health", "stage", "records", "verdict", "elapsed"):
            t.add_column(col)
        for name, p in campaign.progress.items():
            t.add_row(name, p.health or "-", p.stage[:70], str(len(p.records)), p.verdict,
                      f"{p.elapsed_s:.0f} s")
        return t

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
