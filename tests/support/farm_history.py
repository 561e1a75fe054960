"""A history store filled with synthetic campaigns, for dashboard tests and benchmarks.

Records start from a fixture record (tests/data/records) and get their own
ids, times, latencies and samples; one device regresses late, one fails on
some nights, so the page has every kind of point to draw.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

RECORDS = Path(__file__).resolve().parents[1] / "data" / "records"


def template() -> dict:
    [path] = (RECORDS / "passing").glob("fixture-pi4-*.json")
    return json.loads(path.read_text())


def populate(store, campaigns: int, devices: int, samples: int = 60, seed: int = 0,
             start: datetime | None = None) -> list[str]:
    """Write `campaigns` nights x `devices` devices; return the campaign ids (oldest first)."""
    rng = np.random.default_rng(seed)
    base = template()
    start = start or datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    ids = []
    for c in range(campaigns):
        cid = f"nightly-{c:05d}"
        ids.append(cid)
        when = start + timedelta(days=c)
        store.start_campaign(cid, "nightly", started=when)
        for d in range(devices):
            dev = f"board-{d}"
            if d == 1 and c % 7 == 3:  # board-1 fails to answer once a week
                store.add_failure(dev, "health", "infrastructure", f"night {c}: unreachable",
                                  campaign_id=cid, when=when)
                continue
            slow = 1.15 if (d == 0 and c >= campaigns - 2) else 1.0  # board-0 regresses
            center = (20 + 3 * d) * slow
            xs = rng.normal(center, center * 0.03, samples)
            rec = copy.deepcopy(base)
            rec["record_id"] = uuid.uuid4().hex
            rec["run_id"] = cid
            rec["created_utc"] = (when + timedelta(minutes=d)).strftime("%Y-%m-%dT%H:%M:%SZ")
            rec["device"]["name"] = dev
            lat = rec["latency_ms"]
            srt = np.sort(xs)
            lat.update({"samples_ms": xs.tolist(), "warmup_samples_ms": xs[:5].tolist(),
                        "count": samples, "p50_ms": float(np.median(xs)),
                        "p95_ms": float(np.quantile(xs, 0.95)),
                        "p50_ci_ms": [float(srt[int(samples * 0.4)]),
                                      float(srt[int(samples * 0.6)])],
                        "p95_ci_ms": [float(srt[int(samples * 0.9)]), float(srt[-1])]})
            rec["memory"]["peak_rss_mb"] = float(150 + 10 * d + rng.normal(0, 2))
            rec["energy"] = {"energy_per_inference_mj": float(30 + d + rng.normal(0, 1)),
                             "sensor": "synthetic", "status": "measured"}
            for v in rec["verdicts"]:
                if v["metric"] == "latency_p95_ms":
                    v.update(measured=lat["p95_ms"], ci_low=lat["p95_ci_ms"][0],
                             ci_high=lat["p95_ci_ms"][1], limit=40.0)
            pk = store.add_record(rec, campaign_id=cid,
                                  record_path=f"/nonexistent/{cid}/{dev}.json",
                                  log_path=f"/nonexistent/{cid}/{dev}.log")
            if slow > 1:
                from harness.gate import GateRow

                store.add_gate_rows(pk, [GateRow(dev, "tiny-int8", "latency",
                                                 "regression_latency_median", "ms", center,
                                                 20.6, "max", None, None, "regressed",
                                                 change_pct=15.0)])
        store.finish_campaign(cid)
    return ids
