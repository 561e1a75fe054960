"""Human-readable tables of records and verdicts (terminal and Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HEADERS = ("device", "artifact", "metric", "measured", "95% CI", "limit", "verdict")


def _num(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def verdict_rows(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for rec in records:
        dev = rec["device"]["name"] + (" (emulated)" if rec["device"].get("emulated") else "")
        art = f"{rec['artifact']['model']}-{rec['artifact']['variant']}"
        if rec.get("error"):
            rows.append((dev, art, "-", "-", "-", "-", f"ERROR: {rec['error']['kind']}"))
            continue
        for v in rec["verdicts"]:
            op = "<=" if v["direction"] == "max" else ">="
            ci = f"[{_num(v['ci_low'])}, {_num(v['ci_high'])}]" if v["ci_low"] is not None \
                else "-"
            rows.append((dev, art, v["metric"], _num(v["measured"]), ci,
                         f"{op} {_num(v['limit'])}", v["verdict"].upper()))
        if not rec["validity"]["valid"]:
            rows.append((dev, art, "validity", "-", "-", "-", "INVALID (see below)"))
    return rows


def validity_notes(records: Iterable[Mapping[str, Any]]) -> list[str]:
    return [f"{rec['device']['name']}: run invalid: {reason}"
            for rec in records if not rec["validity"]["valid"] and not rec.get("error")
            for reason in rec["validity"]["reasons"]]


def summary_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    records = list(records)
    rows = verdict_rows(records)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(HEADERS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*HEADERS).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return lines + validity_notes(records)


def markdown_table(records: Iterable[Mapping[str, Any]]) -> str:
    rows = verdict_rows(records)
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"
