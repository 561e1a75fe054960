"""Device leases: a holder, a heartbeat and an expiry, in the history store.

labgrid's lesson: a lock that never expires outlives the job that took it,
and someone has to kick it by hand. Here a lease is one row (devices.lease_*)
changed only by single conditional UPDATEs, so two farm hosts racing for one
device cannot both win, on SQLite or PostgreSQL:

* acquire: succeeds when the device is free, its lease expired, or we hold it;
* renew (the heartbeat): succeeds only while we still hold an unexpired lease;
* release: by the holder, or forced (``gem-hil farm release DEVICE``).

A holder that stops renewing (killed, hung, cut off from the database) loses
the lease at its expiry; the LeaseKeeper of a holder that notices it lost its
lease calls ``on_lost`` so the run stops its agent and records why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from harness.history.store import HistoryStore, now, utc
from harness.history.tables import Device


@dataclass(frozen=True)
class LeaseState:
    device: str
    holder: str | None
    heartbeat_utc: datetime | None
    expires_utc: datetime | None

    @property
    def active(self) -> bool:
        return self.holder is not None and self.expires_utc is not None \
            and self.expires_utc > now()


def acquire(store: HistoryStore, device: str, holder: str, expiry_s: float) -> bool:
    store.ensure_devices([device])
    t = now()
    with store.transaction() as s:
        res = s.execute(update(Device).where(
            Device.name == device,
            or_(Device.lease_holder.is_(None), Device.lease_expires_utc < t,
                Device.lease_holder == holder))
            .values(lease_holder=holder, lease_heartbeat_utc=t,
                    lease_expires_utc=t + timedelta(seconds=expiry_s)))
        return res.rowcount == 1


def renew(store: HistoryStore, device: str, holder: str, expiry_s: float) -> bool:
    t = now()
    with store.transaction() as s:
        res = s.execute(update(Device).where(
            Device.name == device, Device.lease_holder == holder, Device.lease_expires_utc >= t)
            .values(lease_heartbeat_utc=t, lease_expires_utc=t + timedelta(seconds=expiry_s)))
        return res.rowcount == 1


def release(store: HistoryStore, device: str, holder: str | None = None) -> bool:
    """Free the lease; only the holder's unless holder is None (forced)."""
    with store.transaction() as s:
        q = update(Device).where(Device.name == device, Device.lease_holder.is_not(None))
        if holder is not None:
            q = q.where(Device.lease_holder == holder)
        res = s.execute(q.values(lease_holder=None, lease_heartbeat_utc=None,
                                 lease_expires_utc=None))
        return res.rowcount == 1


def state(store: HistoryStore, device: str) -> LeaseState:
    row = store.device(device)
    if row is None:
        return LeaseState(device, None, None, None)
    return LeaseState(device, row.lease_holder, utc(row.lease_heartbeat_utc),
                      utc(row.lease_expires_utc))


class LeaseKeeper:
    """Renews a held lease every heartbeat_s in a thread; calls on_lost(reason)
    once when a renewal is refused, or when renewals keep failing (database
    unreachable) until the lease would have expired anyway."""

    def __init__(self, store: HistoryStore, device: str, holder: str, expiry_s: float,
                 heartbeat_s: float, on_lost: Callable[[str], None]) -> None:
        self.store, self.device, self.holder = store, device, holder
        self.expiry_s, self.heartbeat_s = expiry_s, heartbeat_s
        self.on_lost = on_lost
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{device}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.heartbeat_s + 5)

    def _run(self) -> None:
        last_ok = now()
        while not self._stop.wait(self.heartbeat_s):
            try:
                ok = renew(self.store, self.device, self.holder, self.expiry_s)
            except Exception as exc:  # the database went away: keep trying until expiry
                if (now() - last_ok).total_seconds() < self.expiry_s:
                    continue
                ok, why = False, f"lease not renewed for {self.expiry_s:g} s: {exc}"
            else:
                why = "lease lost: another holder took the device or it was released " \
                      "(gem-hil farm release)"
            if ok:
                last_ok = now()
                continue
            if not self._stop.is_set():
                self.lost = why
                self.on_lost(why)
            return
