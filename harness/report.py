"""Human-readable tables of records and verdicts (terminal and Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HEADERS = ("device", "artifact", "metric", "measured", "95% CI", "limit", "verdict")


def _num(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def generation_runs(rec: Mapping[str, Any]) -> dict[str, str]:
    """Generation metrics -> the llama-bench name of the run they come from
    (``ttft_p95_ms`` -> ``pp128``, decode metrics -> ``tg64``), for table labels."""
    gen = rec.get("generation") or {}
    if not gen:
        return {}
    pp, tg = gen["prefill"]["run"], gen["decode"]["run"]
    return {"ttft_p95_ms": pp, "decode_token_p95_ms": tg, "decode_tokens_per_s": tg}


def verdict_rows(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for rec in records:
        dev = rec["device"]["name"] + (" (emulated)" if rec["device"].get("emulated") else "")
        art = f"{rec['artifact']['model']}-{rec['artifact']['variant']}"
        if rec.get("error"):
            rows.append((dev, art, "-", "-", "-", "-", f"ERROR: {rec['error']['kind']}"))
            continue
        runs = generation_runs(rec)
        for v in rec["verdicts"]:
            op = "<=" if v["direction"] == "max" else ">="
            ci = "-" if v["ci_low"] is None and v["ci_high"] is None else \
                f"[{_end(v['ci_low'], '-inf')}, {_end(v['ci_high'], 'unbounded')}]"
            metric = v["metric"] + (f" ({runs[v['metric']]})" if v["metric"] in runs else "")
            rows.append((dev, art, metric, _num(v["measured"]), ci,
                         f"{op} {_num(v['limit'])}", v["verdict"].upper()))
        if not rec["validity"]["valid"]:
            rows.append((dev, art, "validity", "-", "-", "-", "INVALID (see below)"))
        stability = rec["validity"].get("stability") or {}
        if "stable" in stability:
            rows.append((dev, art, "stability (spread)", _num(stability.get("spread_log_mad")),
                         "-", "-", "STABLE" if stability["stable"] else "UNSTABLE (see below)"))
    return rows


def _end(x: Any, missing: str) -> str:
    return missing if x is None else _num(x)


def validity_notes(records: Iterable[Mapping[str, Any]]) -> list[str]:
    notes = []
    for rec in records:
        if rec.get("error"):
            continue
        name = rec["device"]["name"]
        if not rec["validity"]["valid"]:
            notes += [f"{name}: run invalid: {r}" for r in rec["validity"]["reasons"]]
        stability = rec["validity"].get("stability") or {}
        notes += [f"{name}: unstable: {r}" for r in stability.get("reasons") or []]
    return notes


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns under a dashed rule: the one terminal table of gem-hil
    (budget summary, gate, device list)."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def md_escape(text: str) -> str:
    """A table cell or list item that cannot break the Markdown around it."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The same table for Markdown (a CI job summary); cells are escaped."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows])


def quality_notes(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The eval benchmark's headline figures (F1, GG, forgetting, DSI, CDTR), one
    line per record that has them."""
    from harness.quality import quality_summary_line

    out = []
    for rec in records:
        line = quality_summary_line(rec.get("quality"))
        if line:
            out.append(f"{rec['device']['name']} {rec['artifact']['model']}-"
                       f"{rec['artifact']['variant']}: {line}")
    return out


def summary_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    records = list(records)
    return (text_table(HEADERS, verdict_rows(records)) + validity_notes(records)
            + quality_notes(records))
