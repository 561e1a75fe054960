"""Two procrastinate workers of one farm host against a real PostgreSQL: one device
never runs twice at once, and a worker killed mid-job (its whole process group,
as if the host died) frees the device's lease within the lease expiry; the
stalled job is retried by the surviving worker, never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("procrastinate", reason="needs the farm extra: pip install gem-hil[farm]")
pytest.importorskip("psycopg", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.farm import leases  # noqa: E402
from harness.history.store import open_store  # noqa: E402
from tests.support.farm_targets import local_device  # noqa: E402
from tests.support.procs import processes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXPIRY_S = 4.0
HEARTBEAT_S = 0.5


def env(tmp_path: Path) -> dict:
    return dict(os.environ, GEM_HIL_LOCAL_HOME=str(tmp_path / "device-home"),
                PYTHONPATH=str(REPO))


def device_runs() -> list[tuple[int, int, str, str]]:
    """(pid, ppid, device, campaign) of every device process running now.

    A child the device process is forking (its agent, a health-check command)
    carries the parent's argv until it execs: not a second device process."""
    found = [p for p in processes() if "harness.farm.device_run" in p.argv
             and "--device" in p.argv]
    pids = {p.pid for p in found}
    return [(p.pid, p.ppid, p.argv[p.argv.index("--device") + 1],
             p.argv[p.argv.index("--campaign") + 1]) for p in found if p.ppid not in pids]


def test_two_workers_one_device_at_a_time_and_a_killed_worker(postgres, tmp_path):
    url = postgres.create_database("farm_workers")
    targets = tmp_path / "targets"
    local_device(targets, "loc-w1", min_duration_s=6.0, max_duration_s=8.0)
    local_device(targets, "loc-w2")
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nname = "q"\ntargets_dir = "targets"\nhistory = "{url}"\n'
                   f"heartbeat_s = {HEARTBEAT_S}\nlease_expiry_s = {EXPIRY_S}\n\n"
                   '[[device]]\nname = "loc-w1"\nhost = "h1"\n\n'
                   '[[device]]\nname = "loc-w2"\nhost = "h1"\n')
    campaigns = []
    for _ in range(2):  # two nights queued: each device has two jobs
        res = subprocess.run([sys.executable, "-m", "harness.cli", "farm", "enqueue",
                              "--inventory", str(inv)], cwd=REPO, env=env(tmp_path),
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr
        campaigns.append(res.stdout.split()[1].rstrip(":"))
    workers = []
    logs = []
    for i in range(2):
        log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115
        logs.append(log)
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "farm", "worker", "--inventory", str(inv),
             "--host-name", "h1", "--concurrency", "2"], cwd=REPO, env=env(tmp_path),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    seen: Counter = Counter()
    most: Counter = Counter()
    killed: dict = {}
    overlaps: list = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            runs_now = device_runs()
            now = Counter(d for _, _, d, _ in runs_now)
            for d, n in now.items():
                most[d] = max(most[d], n)
                if n > 1:
                    overlaps.append(runs_now)
            if not killed:
                for _pid, ppid, d, c in device_runs():
                    w = next((w for w in workers if w.pid == ppid), None)
                    if d == "loc-w1" and w is not None and seen["loc-w1-started"] > 10:
                        killed.update(worker=w, campaign=c, t=time.monotonic())
                        os.killpg(w.pid, signal.SIGKILL)  # the host dies: worker + device run
                        break
                    if d == "loc-w1":
                        seen["loc-w1-started"] += 1
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    store = open_store(url)
    try:
        deadline = time.monotonic() + 600
        while not killed and time.monotonic() < deadline:
            time.sleep(0.2)
        assert killed, "loc-w1 never ran"
        freed_after = None
        while time.monotonic() < deadline:
            st = leases.state(store, "loc-w1")
            if not st.active or (st.holder and f"worker{killed['worker'].pid}" not in st.holder):
                freed_after = time.monotonic() - killed["t"]
                break
            time.sleep(0.1)
        assert freed_after is not None and freed_after <= EXPIRY_S + 2 * HEARTBEAT_S + 1, \
            freed_after
        # every job ends: the killed one retried by the survivor
        import psycopg

        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                left = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN "
                                    "('todo', 'doing')").fetchone()[0]
            if left == 0:
                break
            time.sleep(0.5)
        assert left == 0, (tmp_path / "worker0.log").read_text()[-3000:]
        with psycopg.connect(url) as conn:
            statuses = [r[0] for r in conn.execute("SELECT status FROM procrastinate_jobs")]
        assert statuses == ["succeeded"] * 4, statuses
        # one device never ran twice at once, though two workers served it
        assert most["loc-w1"] == 1 and most["loc-w2"] == 1, (dict(most), overlaps[:3])
        # the killed night still has its loc-w1 result, from the retried job
        runs = store.runs(campaign_id=killed["campaign"], device="loc-w1", with_records=True)
        assert [r for r in runs if r.error_kind is None], runs
        for c in campaigns:
            assert store.runs(campaign_id=c, device="loc-w2")
            assert [x.status for x in store.campaigns() if x.id == c] == ["finished"]
        assert all(not leases.state(store, d).active for d in ("loc-w1", "loc-w2"))
        log0 = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        assert "stalled" in log0
    finally:
        stop.set()
        t.join(5)
        store.close()
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
                    w.wait()
        for log in logs:
            log.close()
    assert not device_runs()
