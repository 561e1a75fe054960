"""The gate's baseline from the history store: the last N good runs.

``gem-hil gate --history URL`` and the farm (after each record) compare a
candidate with the last N good runs of the same device x model x variant x
benchmark, on their raw samples, through harness.gate's own regression check,
so a night judged from the store and one judged from two folders of records
agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.gate import record_key
from harness.history.store import HistoryStore, parse_utc

#: how many good nights the baseline takes by default
DEFAULT_LAST = 5


def baseline_for(store: HistoryStore, records: Sequence[Mapping[str, Any]],
                 last: int = DEFAULT_LAST, exclude_campaign: str | None = None
                 ) -> list[tuple[Path, dict[str, Any]]]:
    """(name, record) of the last `last` good runs before each candidate, per key.

    Only runs older than the candidate count (a re-judged old night is not
    compared with its own future), and never the candidate itself."""
    out: list[tuple[Path, dict[str, Any]]] = []
    done: set[tuple[str, str, str, str]] = set()
    ids = {str(r.get("record_id")) for r in records}
    for rec in records:
        key = record_key(rec)
        if key in done:
            continue
        done.add(key)
        device, model, variant, bench = key
        before = min(parse_utc(r.get("created_utc")) for r in records if record_key(r) == key)
        for run in store.last_runs(device, model, variant, bench, n=last, before=before,
                                   exclude_campaign=exclude_campaign):
            if run.record_id in ids or run.record is None:
                continue
            name = Path(run.record_path).name if run.record_path else f"{run.record_id}.json"
            out.append((Path(f"history:{run.campaign_id or '-'}/{name}"), run.record))
    return out
