"""One device's part of a campaign, in a process of its own.

    python -m harness.farm.device_run --inventory farm.toml --device NAME \
        --campaign ID [--history URL]

The campaign (or a queue worker) starts one of these per device, so a crash,
a hang or a wedged driver takes down this process only. It takes the
device's lease (and keeps it alive from a thread), checks the device's
health, then per variant builds the artifact, pushes it (transport errors
retried with backoff) and runs the benchmark ONCE. Every record goes to
reports/<campaign>/<device>/ and to the history store as soon as its
benchmark ends; every failure is a row. Progress goes to stdout as one JSON
object per line (the parent draws it); the log goes to stderr.

Losing the lease (another holder took it, or `farm release`) sends this
process SIGTERM: the transport stops the agent, the bench engine writes the
run's "interrupted" record, and the lease loss is recorded as its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.cli import ExitCode
from harness.errors import HarnessError, TransportError
from harness.farm import health, leases
from harness.farm.inventory import DeviceEntry, Inventory, load_inventory, options_for, this_host
from harness.farm.retry import with_retries
from harness.history.store import HistoryStore, open_store

#: exit codes by record verdict (the worst wins)
_RANK = {"pass": 0, "inconclusive": 1, "invalid": 1, "fail": 2, "error": 3}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


class DeviceRun:
    def __init__(self, inv: Inventory, entry: DeviceEntry, campaign: str, store: HistoryStore,
                 holder: str) -> None:
        self.inv, self.entry, self.campaign, self.store = inv, entry, campaign, store
        self.holder = holder
        self.s = inv.farm
        self.folder = inv.report_root / campaign / entry.name
        self.log_path = self.folder / "device.log"
        self.worst = "pass"
        self.keeper: leases.LeaseKeeper | None = None
        self.wait_lease_s = 0.0

    # -- bookkeeping --------------------------------------------------------

    def fail(self, stage: str, kind: str, reason: str, variant: str | None = None) -> None:
        log(f"FAILURE {stage}/{kind}: {reason}")
        self.store.add_failure(self.entry.name, stage, kind, reason, self.campaign, variant,
                               self.log_path)
        emit("failure", stage=stage, kind=kind, reason=reason, variant=variant)
        self._worse("error")

    def _worse(self, verdict: str) -> None:
        if _RANK.get(verdict, 1) > _RANK.get(self.worst, 1):
            self.worst = verdict

    def ingest(self, seen: set[Path]) -> None:
        """Store every record written since the last look (one transaction each)."""
        for path in sorted(self.folder.glob("*.json")):
            if path in seen:
                continue
            rec = json.loads(path.read_text(encoding="utf-8"))
            pk = self.store.add_record(rec, self.campaign, path, self.log_path)
            seen.add(path)  # only once stored: an interrupted write is tried again
            verdict = rec.get("overall_verdict", "error")
            if verdict != "error":
                regression = self.judge(pk, path, rec)
                if regression == "regressed":
                    verdict = "fail"
            self._worse(verdict)
            lat = rec.get("latency_ms") or {}
            err = rec.get("error") or {}
            emit("record", variant=rec["artifact"]["variant"], verdict=verdict,
                 p95_ms=lat.get("p95_ms"), path=str(path),
                 reason=str(err.get("message", "")).splitlines()[0][:200] if err else "")
            log(f"record {path.name}: {verdict}")

    def judge(self, pk: int, path: Path, rec: dict[str, Any]) -> str | None:
        """The gate's regression check against the store's last good runs, stored
        with the run so the dashboard marks it. A judging error is logged: it
        never costs the record."""
        from harness.gate import gate_records
        from harness.history.baseline import baseline_for

        try:
            base = baseline_for(self.store, [rec], self.s.baseline_last, self.campaign)
            if not base:
                return None
            report = gate_records([(path, rec)], base, self.inv.targets_dir)
            rows = [r for r in report.rows if r.metric == "regression_latency_median"]
            self.store.add_gate_rows(pk, rows)
        except Exception as exc:  # noqa: BLE001 - the record is stored; say why no verdict
            log(f"regression check against the history failed: {exc!r}")
            return None
        for r in rows:
            log(f"regression check vs {len(base)} good run(s): {r.verdict} ({r.note})")
        return rows[0].verdict if rows else None

    def retry(self, fn: Any) -> Any:
        def said(attempt: int, exc: BaseException, wait: float) -> None:
            log(f"transport error, retry {attempt}/{self.s.transport_retries} in {wait:g} s: "
                f"{exc}")
            emit("stage", text=f"retry {attempt} after transport error")

        return with_retries(fn, self.s.transport_retries, self.s.retry_backoff_s, said)

    # -- the run ------------------------------------------------------------------

    def run(self) -> int:
        from harness.plan import make_plan

        self.folder.mkdir(parents=True, exist_ok=True)
        name = self.entry.name
        row = self.store.device(name)
        if row is not None and row.health in ("bad", "maintenance"):
            self.fail("health", "quarantined" if row.health == "bad" else "maintenance",
                      f"not run: device is {row.health} ({row.health_note or 'no note'}); "
                      f"gem-hil farm return {name} puts it back in service")
            return ExitCode.ERROR
        emit("stage", text="taking the lease")
        if not self._acquire():
            st = leases.state(self.store, name)
            self.fail("lease", "busy", f"not run: the device is leased by {st.holder} until "
                                       f"{st.expires_utc:%Y-%m-%d %H:%M:%S} UTC")
            return ExitCode.ERROR
        self.keeper = leases.LeaseKeeper(self.store, name, self.holder, self.s.lease_expiry_s,
                                         self.s.heartbeat_s, self._lease_lost).start()
        seen: set[Path] = set()
        try:
            variants = list(self.entry.variants) or [None]
            plans = [make_plan(options_for(self.inv, self.entry, v), run_id=self.campaign,
                               report_subdir=f"{self.campaign}/{name}") for v in variants]
            with plans[0].open_device() as dev:
                dev.progress = lambda text: emit("stage", text=text)
                emit("stage", text="health check")
                result = health.run_check(dev, self.s.max_temperature_c,
                                          self.s.min_free_disk_mb, self.retry)
                state = health.record(self.store, name, result, self.s.quarantine_after)
                emit("health", health=state, reason=result.reason, facts=result.facts)
                log(f"health: {state} ({result.reason})")
                if not result.ok:
                    self.fail("health", "infrastructure" if result.infrastructure else "check",
                              f"health check failed ({state}): {result.reason}")
                    return ExitCode.ERROR
                self._benchmarks(dev, plans, seen)
        except KeyboardInterrupt as exc:
            self.ingest(seen)
            from harness import interrupts

            if self.keeper and self.keeper.lost:
                self.fail("lease", "lease_lost", f"stopped: {self.keeper.lost}")
            else:
                self.fail("run", "interrupted", f"stopped: {interrupts.describe(exc)}")
            return ExitCode.interrupted(interrupts.signum_of(exc))
        except HarnessError as exc:
            self.ingest(seen)
            self.fail("setup", type(exc).__name__, str(exc))
        finally:
            if self.keeper:
                self.keeper.stop()
            leases.release(self.store, name, self.holder)
        return {"pass": ExitCode.PASS, "fail": ExitCode.FAIL,
                "error": ExitCode.ERROR}.get(self.worst, ExitCode.INCONCLUSIVE)

    def _benchmarks(self, dev: Any, plans: list[Any], seen: set[Path]) -> None:
        from harness.artifacts import build_artifact

        for i, plan in enumerate(plans):
            emit("stage", variant=plan.variant, text=f"building {plan.label}")
            t0 = time.perf_counter()
            try:
                art = build_artifact(plan.model, plan.variant, plan.fmt, plan.artifact_cache)
            except HarnessError as exc:
                plan.record_failure("build", exc, time.perf_counter() - t0)
                self.ingest(seen)
                continue
            try:
                self.retry(dev.ensure_agent)
                self.retry(lambda a=art: dev.push_artifact(a))
            except TransportError as exc:
                plan.record_failure("push", exc, time.perf_counter() - t0)
                self.ingest(seen)
                self._not_run(plans[i + 1:], f"the device stopped answering while pushing "
                                             f"{plan.label}: {exc}")
                return
            try:  # once: a failed benchmark is a recorded failure, never re-run
                dev.run_benchmark(art, budget_overrides=plan.budget_overrides,
                                  report_dir=plan.report_dir, run_id=plan.run_id)
            except TransportError as exc:
                self.ingest(seen)
                health.mark_unknown(self.store, self.entry.name, f"transport error: {exc}")
                self._not_run(plans[i + 1:], f"the device stopped answering during "
                                             f"{plan.label}: {exc}")
                return
            except HarnessError:
                pass  # the record says why
            self.ingest(seen)

    def _acquire(self) -> bool:
        deadline = time.monotonic() + self.wait_lease_s
        while True:
            if leases.acquire(self.store, self.entry.name, self.holder, self.s.lease_expiry_s):
                return True
            if time.monotonic() >= deadline:
                return False
            emit("stage", text="waiting for the lease")
            time.sleep(min(1.0, self.s.heartbeat_s))

    def _not_run(self, plans: list[Any], why: str) -> None:
        for plan in plans:
            self.fail("run", "not_run", f"{plan.label} not run: {why}", plan.variant)

    def _lease_lost(self, why: str) -> None:
        log(why)
        os.kill(os.getpid(), signal.SIGTERM)  # unwinds the run: the agent is stopped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.farm.device_run")
    ap.add_argument("--inventory", required=True, type=Path)
    ap.add_argument("--device", required=True)
    ap.add_argument("--campaign", required=True)
    ap.add_argument("--history", default=None)
    ap.add_argument("--holder", default=None)
    ap.add_argument("--wait-lease", type=float, default=0.0, metavar="S",
                    help="wait this long for a busy lease (a retried queue job waits out the "
                         "lease of the worker that died)")
    args = ap.parse_args(argv)
    from harness import interrupts

    try:
        with interrupts.signals_as_exceptions():
            inv = load_inventory(args.inventory, check_profiles=False)
            entry = inv.device(args.device)
            store = open_store(inv.history_url(args.history), migrate=False)
            holder = args.holder or f"{this_host()}:{os.getpid()}:{args.campaign}"
            try:
                run = DeviceRun(inv, entry, args.campaign, store, holder)
                run.wait_lease_s = args.wait_lease
                return int(run.run())
            finally:
                store.close()
    except HarnessError as exc:
        log(f"error: {exc}")
        emit("failure", stage="setup", kind=type(exc).__name__, reason=str(exc))
        return ExitCode.ERROR
    except KeyboardInterrupt as exc:
        return ExitCode.interrupted(interrupts.signum_of(exc))


if __name__ == "__main__":
    sys.exit(main())
