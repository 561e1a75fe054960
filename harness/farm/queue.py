"""Past one host: procrastinate (a PostgreSQL task queue) runs the farm's jobs.

Several farm hosts, each with its own attached devices, share one PostgreSQL
database: the history store and procrastinate's tables live side by side.

* a queue per farm host (``farm-<host>``), a job per (campaign, device), with
  ``lock=<device>``: procrastinate never runs two jobs with the same lock at
  once, so one device never runs two jobs, whichever worker claims them;
* ``gem-hil farm worker --host-name H`` serves queue farm-H; each job runs the
  device in its own process (harness.farm.device_run), which takes the
  device's lease, as a campaign does, so the lease rules hold here too;
* a worker killed mid-job: its device process gets SIGTERM (PR_SET_PDEATHSIG),
  stops its agent, records the interruption and frees the lease at once; if
  the whole host died, the lease expires (lease_expiry_s) and the job, stalled
  once its worker's heartbeat stops, is retried by a surviving worker of the
  same queue, which waits for the expired lease. Never lost, never doubled.

One SQLite host needs none of this: ``gem-hil farm run`` is enough.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from typing import Any

from harness.farm.campaign import _child_env, device_argv, new_campaign_id
from harness.farm.inventory import Inventory, this_host

TASK = "gem_hil.farm.run_device"
PR_SET_PDEATHSIG = 1


def queue_name(host: str) -> str:
    return f"farm-{host}"


def conninfo(url: str) -> str:
    """procrastinate's psycopg URL (no SQLAlchemy driver suffix)."""
    from harness.history.url import normalize_url

    full = normalize_url(url)
    if not full.startswith("postgresql+psycopg://"):
        from harness.errors import ConfigError

        raise ConfigError("farm workers need a PostgreSQL history store: set [farm] history = "
                          '"postgresql://USER@HOST:PORT/DB" (SQLite hosts use gem-hil farm run)')
    return "postgresql://" + full.split("://", 1)[1]


def make_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))

    @app.task(name=TASK, pass_context=True)
    async def run_device(context: Any, inventory: str, device: str, campaign: str,
                         history: str, wait_lease_s: float = 0.0) -> int:
        """One device of one campaign, in its own process (crash isolation)."""
        holder = f"{context.worker_name}:job{context.job.id}"
        argv = device_argv(_inv_stub(inventory), device, campaign, history, holder)
        argv += ["--wait-lease", str(wait_lease_s)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=None, env=_child_env(), preexec_fn=_die_with_parent)
        try:
            rc = await proc.wait()
        except asyncio.CancelledError:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
            raise
        _finish_if_last(history, campaign, context.job.id)
        return rc  # a recorded failure is a finished job: never re-run into a number

    return app


class _inv_stub:  # device_argv only needs the inventory's path
    def __init__(self, path: str) -> None:
        self.path = path


def _die_with_parent() -> None:
    """In the device process: SIGTERM when the worker that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def ensure_schema(app: Any, url: str) -> None:
    """procrastinate's tables once per database (an advisory lock serialises hosts)."""
    import psycopg

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4101967)")
        try:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0]
            if exists is None:
                conn.execute(app.schema_manager.get_schema())
        finally:
            conn.execute("SELECT pg_advisory_unlock(4101967)")


def _finish_if_last(history: str, campaign: str, job_id: int) -> None:
    """The last job of a campaign marks it finished (no coordinator to do it)."""
    import psycopg

    from harness.history.store import open_store

    with psycopg.connect(conninfo(history), autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND "
            "args->>'campaign' = %s AND status IN ('todo', 'doing') AND id <> %s",
            (TASK, campaign, job_id)).fetchone()[0]
    if left == 0:
        store = open_store(history, migrate=False)
        try:
            store.finish_campaign(campaign)
        finally:
            store.close()


def enqueue_campaign(inv: Inventory, url: str, campaign: str | None = None
                     ) -> tuple[str, list[tuple[str, str, int]]]:
    """One job per enabled device on its host's queue; returns (campaign, jobs)."""
    from harness.history.store import open_store

    campaign = campaign or new_campaign_id(inv.farm.name)
    store = open_store(url)
    try:
        store.start_campaign(campaign, inv.farm.name, str(inv.path), "queue")
        store.ensure_devices([d.name for d in inv.devices])
    finally:
        store.close()
    app = make_app(url)
    ensure_schema(app, url)
    jobs = []
    with app.open():
        for d in inv.for_host(None):
            q = queue_name(d.host or this_host())
            job_id = app.configure_task(TASK, queue=q, lock=d.name).defer(
                inventory=str(inv.path), device=d.name, campaign=campaign, history=url,
                wait_lease_s=inv.farm.lease_expiry_s * 2)
            jobs.append((d.name, q, job_id))
    return campaign, jobs


async def _retry_stalled(app: Any, queue: str, after_s: float, every_s: float) -> None:
    """Jobs whose worker stopped sending heartbeats go back to the queue."""
    while True:
        await asyncio.sleep(every_s)
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                queue=queue, task_name=TASK, seconds_since_heartbeat=after_s)
            for job in stalled:
                print(f"farm worker: job {job.id} ({job.task_kwargs.get('device')}) stalled "
                      "(its worker stopped); retrying it", file=sys.stderr, flush=True)
                await app.job_manager.retry_job(job)
        except Exception as exc:  # noqa: BLE001 - the database blinked; try next round
            print(f"farm worker: stalled-job check failed: {exc}", file=sys.stderr)


def run_worker(inv: Inventory, url: str, host: str, concurrency: int = 8,
               once: bool = False) -> int:
    app = make_app(url)
    ensure_schema(app, url)
    q = queue_name(host)
    hb = inv.farm.heartbeat_s
    name = f"{host}:worker{os.getpid()}"
    print(f"farm worker {name}: serving queue {q} (concurrency {concurrency})",
          file=sys.stderr, flush=True)

    async def main() -> None:
        async with app.open_async():
            sweeper = asyncio.create_task(_retry_stalled(app, q, inv.farm.lease_expiry_s, hb))
            try:
                await app.run_worker_async(queues=[q], concurrency=concurrency, wait=not once,
                                           name=name, update_heartbeat_interval=hb,
                                           stalled_worker_timeout=inv.farm.lease_expiry_s,
                                           fetch_job_polling_interval=hb,
                                           install_signal_handlers=True)
            finally:
                sweeper.cancel()

    asyncio.run(main())
    return 0
