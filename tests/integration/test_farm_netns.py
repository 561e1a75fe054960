"""The fault-injected emulated farm: five real sshd boards, each in its own network
namespace, the farm in another. One board loses 5 % of its packets, one is
rate-limited, one has its sshd killed mid-benchmark, one is black-holed
mid-run, one is clean. The campaign completes; the healthy boards' records
are intact; the failures are recorded with reasons; every lease is released;
the record written before a fault is kept."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.farm import leases  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from tests.support import netns_farm  # noqa: E402
from tests.support.procs import processes  # noqa: E402

pytestmark = pytest.mark.ssh

BOARDS = ["b-clean", "b-loss", "b-rate", "b-kill", "b-hole"]


def agent_running(board: str) -> bool:
    return any(any("gem_agent" in a for a in p.argv) and any(f"gem-hil-{board}/" in a
                                                            for a in p.argv)
               for p in processes())


@pytest.fixture(scope="module")
def farm():
    reason = netns_farm.unavailable_reason()
    if reason:
        pytest.skip(f"emulated netns farm unavailable: {reason}")
    f = netns_farm.NetnsFarm(BOARDS, Path("/tmp"))
    try:
        f.start()
    except Exception as exc:
        f.cleanup()
        pytest.fail(f"could not build the emulated farm: {exc}")
    try:
        yield f
    finally:
        f.cleanup()
        f.remove_created_user()


def test_campaign_survives_faults(farm, tmp_path):
    targets = tmp_path / "targets"
    targets.mkdir()
    for name, board in farm.boards.items():
        long = name in ("b-kill", "b-hole")
        board.profile(targets, min_duration_s=6.0 if long else 0.5, max_duration_s=8.0,
                      min_count=20, timeout_s=40.0)
    inv = tmp_path / "farm.toml"
    lines = ["[farm]", 'name = "netns"', 'targets_dir = "targets"', "heartbeat_s = 1",
             "lease_expiry_s = 10", "transport_retries = 2", "retry_backoff_s = 0.5",
             "accept_new_host_key = false", ""]
    for name in BOARDS:
        variants = '["int8", "fp32"]' if name in ("b-kill", "b-hole") else '["int8"]'
        lines += ["[[device]]", f'name = "{name}"', f"variants = {variants}", ""]
    inv.write_text("\n".join(lines))
    farm.loss("b-loss", 5)
    farm.rate_limit("b-rate", "2mbit")
    db = tmp_path / "reports" / "history.sqlite"
    faults: dict[str, float] = {}

    def inject():
        """Each fault lands while its board's SECOND benchmark (fp32) is measuring:
        the first (int8) record is already written and must survive."""
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(faults) < 2:
            for name, fault in (("b-kill", farm.boards["b-kill"].kill_sshd),
                                ("b-hole", lambda: farm.black_hole("b-hole"))):
                if name in faults or not db.exists():
                    continue
                if agent_running(name) and _runs(db, name) >= 1:
                    time.sleep(1.0)
                    fault()
                    faults[name] = time.monotonic()
            time.sleep(0.2)

    t = threading.Thread(target=inject, daemon=True)
    t.start()
    res = farm.run(["-m", "harness.cli", "farm", "run", "--inventory", str(inv)])
    t.join(10)
    out = res.stdout + res.stderr
    assert sorted(faults) == ["b-hole", "b-kill"], out
    assert res.returncode == 1, out  # completed, with failures
    camp_dir = next((tmp_path / "reports").glob("netns-*"))
    summary = json.loads((camp_dir / "campaign.json").read_text())["devices"]
    store = open_store(str(db))
    try:
        for name in ("b-clean", "b-loss", "b-rate"):  # healthy results intact
            [run] = store.runs(device=name, with_records=True)
            assert run.error_kind is None, (name, run.record.get("error"))
            assert run.record["latency_ms"]["count"] >= 20
            assert len(run.record["latency_ms"]["samples_ms"]) >= run.record["latency_ms"][
                "count"]  # the raw samples came back whole through the store
            assert summary[name]["verdict"] != "error", summary[name]
        for name in ("b-kill", "b-hole"):
            runs = {r.variant: r for r in store.runs(device=name, with_records=True)}
            assert runs["int8"].error_kind is None  # written before the fault: kept
            assert runs["int8"].record["latency_ms"]["samples_ms"]
            assert runs["fp32"].error_kind == "transport", runs["fp32"].record["error"]
            [fail] = [f for f in store.failures(device=name)]
            assert fail.stage == "run" and fail.kind == "transport" and fail.reason
            print(f"\n{name}: {fail.reason.splitlines()[0][:200]}")
            assert store.device(name).health == "unknown"  # re-checked next night
        for name in BOARDS:
            assert leases.state(store, name).holder is None, name
    finally:
        store.close()


def _runs(db: Path, device: str) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("select count(*) from runs where device = ?",
                                (device,)).fetchone()[0]
    except sqlite3.Error:
        return 0
