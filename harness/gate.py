"""The release gate: result records in, one exit code and a readable table out.

For every result record (one per device x artifact x benchmark) the gate

1. re-applies the budgets: the limits the record was judged against, replaced
   by the device profile's current limits when that profile is available
   (a budget tightened after the run is what the release must meet), decided
   from the recorded confidence intervals (pass only when the whole interval
   is within the limit, fail only when it is entirely beyond it);
2. distrusts invalid runs: a record whose validity says invalid contributes
   "invalid", never pass or fail, whatever its numbers say;
3. compares latency with the baseline record(s) of the same device, model,
   variant and benchmark on the raw samples (harness.regression): a
   statistically clear slowdown of at least min_effect fails the gate.
   Several baseline records per key (the last nights) and several candidate
   runs are all used: their spread measures the run-to-run variation.

Exit status: 0 all pass; 1 anything failed (budget fail, regression, or a run
that errored on the device); 2 nothing failed but something is inconclusive
or invalid (or there are no records at all): "we do not know yet" is not a
pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.budgets import (
    METRICS,
    benchmark_scope,
    evaluate,
    not_applicable,
    record_measurements,
)
from harness.errors import ConfigError, HarnessError
from harness.regression import DEFAULT_RUN_SD, compare_runs
from harness.report import markdown_table, md_escape, text_table

EXIT_PASS, EXIT_FAIL, EXIT_UNSURE = 0, 1, 2
FAILING = ("fail", "error", "regressed")
UNSURE = ("inconclusive", "invalid")


@dataclass
class GateRow:
    """One line of the gate table."""

    device: str
    artifact: str
    benchmark: str
    metric: str
    unit: str
    measured: float | None
    limit: float | None
    direction: str | None
    ci_low: float | None
    ci_high: float | None
    verdict: str  # pass fail inconclusive invalid error recorded regressed unchanged improved
    change_pct: float | None = None
    note: str = ""
    source: str = ""
    record: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateReport:
    rows: list[GateRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    records: int = 0
    baseline_records: int = 0

    @property
    def exit_code(self) -> int:
        verdicts = {r.verdict for r in self.rows}
        if verdicts & set(FAILING):
            return EXIT_FAIL
        if verdicts & set(UNSURE) or self.records == 0:
            return EXIT_UNSURE
        return EXIT_PASS

    @property
    def outcome(self) -> str:
        return {EXIT_PASS: "PASS", EXIT_FAIL: "FAIL", EXIT_UNSURE: "INCONCLUSIVE"}[self.exit_code]

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exit_code": self.exit_code, "records": self.records,
                "baseline_records": self.baseline_records, "warnings": self.warnings,
                "rows": [r.as_dict() for r in self.rows]}


# -- reading records ----------------------------------------------------------

def load_records(folder: Path, what: str = "--results") -> list[tuple[Path, dict[str, Any]]]:
    """Every *.json result record under folder (recursively), sorted by path.

    A file that is not JSON or not a record is an error naming the file: a
    gate that silently skips a broken record could pass a release on the
    records that happened to parse.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{what} {folder}: not a directory; give the folder the pytest run "
                          "wrote its result records to (reports/<run>/)")
    out = []
    for path in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON result record: {exc}") from None
        if not isinstance(rec, dict) or "device" not in rec or "artifact" not in rec:
            raise ConfigError(f"{path}: JSON but not a result record (no device/artifact); "
                              f"keep only records in {what} folders")
        out.append((path, rec))
    return out


def record_key(rec: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """What makes two records comparable: device, model, variant, benchmark."""
    art = rec.get("artifact") or {}
    return (str((rec.get("device") or {}).get("name")), str(art.get("model")),
            str(art.get("variant")), str((rec.get("benchmark") or {}).get("name")))


def boot_runs(records: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """The records' kept samples pooled per boot (environment.boot_id): a boot, not a
    record, is the unit of replication. A record without a boot id is a boot of its own."""
    boots: dict[str, list[float]] = {}
    for i, rec in enumerate(records):
        boot = (rec.get("environment") or {}).get("boot_id") or f"record-{i}"
        samples = kept_samples(rec)
        if len(samples) >= 2:
            boots.setdefault(str(boot), []).extend(samples)
    return list(boots.values())


def kept_samples(rec: Mapping[str, Any]) -> list[float]:
    """Raw latency samples minus the warm-up drift the validity check excluded."""
    lat = rec.get("latency_ms") or {}
    samples = list(lat.get("samples_ms") or [])
    skip = int((rec.get("validity") or {}).get("excluded_leading_count") or 0)
    return samples[skip:] if skip < len(samples) else samples



# -- budgets ------------------------------------------------------------------

def _device_profile(device: str, targets_dir: Path | None, use_profiles: bool
                    ) -> tuple[Any, HarnessError | ImportError | None]:
    """(the device's current profile or None, the error that kept it from loading).

    Looked up on the same search path as `--device` (targets_dir first, then
    $GEM_HIL_TARGETS, the user folder and the shipped profiles); budgets and
    bounds only, so this machine need not hold the device's SSH key."""
    if not use_profiles:
        return None, None
    from harness.profiles import load_profile, profile_paths

    if device not in profile_paths(targets_dir):
        return None, None
    try:
        return load_profile(device, targets_dir, check_files=False), None
    except (HarnessError, ImportError) as exc:
        return None, exc


def _profile_budgets(rec: Mapping[str, Any], targets_dir: Path | None, use_profiles: bool,
                     warnings: list[str]) -> tuple[dict[str, float], dict[str, float]] | None:
    """(budgets, emulator budgets) from the device's current profile, or None."""
    device, model, variant, _ = record_key(rec)
    prof, exc = _device_profile(device, targets_dir, use_profiles)
    if exc is not None:
        warnings.append(f"profile {device}: not used ({exc}); gating on the record's limits")
    if prof is None:
        return None
    return prof.budgets_for(model, variant), dict(prof.budgets.get("emulator", {}))


def _profile_run_sd(device: str, targets_dir: Path | None, use_profiles: bool) -> float | None:
    """The device profile's [validity] run_to_run_sd (None: the default floor; a
    profile that does not load was already warned about by budget_rows)."""
    from harness.validity import ValidityBounds

    prof, _ = _device_profile(device, targets_dir, use_profiles)
    return ValidityBounds.from_profile(prof).run_to_run_sd if prof is not None else None


def budget_rows(rec: Mapping[str, Any], name: str, targets_dir: Path | None,
                warnings: list[str], use_profiles: bool = True) -> list[GateRow]:
    device, model, variant, bench = record_key(rec)
    budgets: dict[str, float] = {}
    sources: dict[str, str] = {}
    emulator: dict[str, float] = {}
    for v in rec.get("verdicts") or []:
        metric = v.get("metric")
        if metric not in METRICS:
            warnings.append(f"{name}: verdict for unknown metric {metric!r} ignored")
            continue
        if v.get("source") == "emulator":
            emulator[metric] = float(v["limit"])
        else:
            budgets[metric] = float(v["limit"])
            sources[metric] = v.get("source") or "profile"
    prof = _profile_budgets(rec, targets_dir, use_profiles, warnings)
    if prof is not None:
        p_budgets, p_emulator = prof
        for metric, limit in p_budgets.items():
            if sources.get(metric) != "cli":
                budgets[metric] = limit
                sources[metric] = "profile"
        emulator.update(p_emulator)
    emulated = bool((rec.get("device") or {}).get("emulated"))
    validity = rec.get("validity") or {}
    stability = validity.get("stability") or {}
    verdicts = evaluate(budgets, record_measurements(rec), sources, emulated=emulated,
                        emulator_budgets=emulator, stopped_by=validity.get("stopped_by"),
                        unstable=stability.get("stable") is False,
                        inapplicable={**not_applicable((rec.get("artifact") or {}).get("format")),
                                      **benchmark_scope(bench)})
    return [GateRow(device, f"{model}-{variant}", bench, v.metric, v.unit, v.measured, v.limit,
                    v.direction, v.ci_low, v.ci_high, v.verdict, note=v.reason,
                    source=v.source, record=name) for v in verdicts]


def ab_row(rec: Mapping[str, Any], name: str) -> GateRow:
    """The interleaved A/B comparison a record carries (bench --ab-variant), as a row."""
    device, model, variant, bench = record_key(rec)
    ab = rec["ab"]
    c = ab["comparison"]
    base = ab.get("baseline_artifact") or {}
    lo, hi = (c.get("ci") or [None, None])[:2]
    med = c.get("median_baseline_ms")
    return GateRow(device, f"{model}-{variant}", bench, "ab_latency_median", "ms",
                   c.get("median_candidate_ms"), med * (1 + c["min_effect"]) if med else None,
                   "max", lo * med if lo is not None and med else None,
                   hi * med if hi is not None and med else None,
                   {"regressed": "regressed", "inconclusive": "inconclusive"}.get(
                       c["verdict"], "pass"),
                   note=f"{c['verdict']} vs {base.get('model')}-{base.get('variant')} "
                        f"(interleaved A/B): {c.get('reason', '')}",
                   source="ab", record=name, change_pct=(c["ratio_median"] - 1) * 100)


# -- the gate -----------------------------------------------------------------

def gate_records(results: Sequence[tuple[Path, dict[str, Any]]],
                 baseline: Sequence[tuple[Path, dict[str, Any]]] | None = None,
                 targets_dir: Path | None = None, min_effect: float = 0.03,
                 confidence: float = 0.95, lenient_regression: bool = False,
                 run_sd: float | None = None, use_profiles: bool = True) -> GateReport:
    """Gate already-loaded records (see the module docstring for the rules)."""
    report = GateReport(records=len(results), baseline_records=len(baseline or []))
    base_by_key: dict[tuple[str, str, str, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path, rec in baseline or []:
        base_by_key.setdefault(record_key(rec), []).append((path, rec))
    for runs in base_by_key.values():  # newest last: it is the one "vs baseline" shows
        runs.sort(key=lambda pr: str(pr[1].get("created_utc", "")))
    cand_by_key: dict[tuple[str, str, str, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path, rec in results:
        name = path.name
        key = record_key(rec)
        device, model, variant, bench = key
        art = f"{model}-{variant}"
        if rec.get("error") or rec.get("overall_verdict") == "error":
            err = rec.get("error") or {}
            first = str(err.get("message", "the run failed")).splitlines()[0][:200]
            report.rows.append(GateRow(device, art, bench, "run", "", None, None, None, None,
                                       None, "error", note=f"{err.get('kind', 'error')}: {first}",
                                       record=name))
            continue
        cand_by_key.setdefault(key, []).append((path, rec))
        rows = budget_rows(rec, name, targets_dir, report.warnings, use_profiles)
        if rec.get("ab"):
            rows.append(ab_row(rec, name))
        validity = rec.get("validity") or {}
        if validity.get("valid") is False:
            reasons = "; ".join(validity.get("reasons") or ["no reason recorded"])
            for r in rows:
                if r.verdict != "recorded":
                    r.note = f"would be {r.verdict}, but the run is invalid"
                    r.verdict = "invalid"
            rows.insert(0, GateRow(device, art, bench, "validity", "", None, None, None, None,
                                   None, "invalid", note=reasons, record=name))
        if key in base_by_key:
            base_meas = record_measurements(base_by_key[key][-1][1])
            for r in rows:
                b = base_meas.get(r.metric)
                if b is not None and b.value and r.measured is not None:
                    r.change_pct = (r.measured / b.value - 1.0) * 100.0
        elif baseline is not None:
            report.warnings.append(f"{name}: no baseline record for device {device}, "
                                   f"{art}, benchmark {bench}: regression not checked")
        report.rows.extend(rows)
    for key, cands in cand_by_key.items():
        if key in base_by_key:
            sd = run_sd if run_sd is not None else _profile_run_sd(key[0], targets_dir,
                                                                   use_profiles)
            report.rows.append(_regression_row(cands, base_by_key[key], min_effect, confidence,
                                               lenient_regression, sd))
    return report


def _regression_row(cands: list[tuple[Path, dict[str, Any]]],
                    bases: list[tuple[Path, dict[str, Any]]], min_effect: float,
                    confidence: float, lenient: bool, run_sd: float | None) -> GateRow:
    """One regression row per (device, model, variant, benchmark), over every run of each side.

    Several baseline records (e.g. the last nights) or several candidate runs
    let harness.regression.compare_runs measure the run-to-run variation that
    a single pair of runs cannot see.
    """
    rec = cands[-1][1]
    device, model, variant, bench = record_key(rec)
    names = ", ".join(p.name for p, _ in cands)
    row = GateRow(device, f"{model}-{variant}", bench, "regression_latency_median", "ms", None,
                  None, None, None, None, "inconclusive", record=names,
                  source="baseline " + ", ".join(p.name for p, _ in bases))
    if (rec.get("device") or {}).get("emulated"):
        row.verdict, row.note = "recorded", "emulated device: timing not compared"
        return row
    valid_bases = [r for _, r in bases if (r.get("validity") or {}).get("valid") is not False]
    valid_cands = [r for _, r in cands if (r.get("validity") or {}).get("valid") is not False]
    if not valid_bases:
        row.verdict, row.note = "invalid", "every baseline run is invalid: re-run the baseline"
        return row
    if not valid_cands:
        row.verdict, row.note = "invalid", "every candidate run is invalid"
        return row
    base_runs, cand_runs = boot_runs(valid_bases), boot_runs(valid_cands)
    if not base_runs or not cand_runs:
        row.note = "raw samples missing in the record or the baseline"
        return row
    period = int((rec.get("latency_ms") or {}).get("input_pool_size") or 1)
    res = compare_runs(base_runs, cand_runs, min_effect=min_effect, confidence=confidence,
                       run_sd=DEFAULT_RUN_SD if run_sd is None else run_sd, period=period)
    row.measured, row.change_pct = res.median_candidate_ms, res.change_pct
    row.limit = res.median_baseline_ms * (1 + min_effect)
    row.direction = "max"
    row.ci_low, row.ci_high = (res.ci[0] * res.median_baseline_ms,
                               res.ci[1] * res.median_baseline_ms)
    row.note = f"{res.verdict}: {res.reason}"
    row.verdict = {"regressed": "regressed", "improved": "pass", "unchanged": "pass",
                   "inconclusive": "pass" if lenient else "inconclusive"}[res.verdict]
    if lenient and res.verdict == "inconclusive":
        row.note += " (treated as pass: --lenient-regression)"
    return row


def run_gate(results_dir: Path, baseline_dir: Path | None = None,
             targets_dir: Path | None = None, **kwargs: Any) -> GateReport:
    results = load_records(results_dir, "--results")
    baseline = load_records(baseline_dir, "--baseline") if baseline_dir is not None else None
    report = gate_records(results, baseline, targets_dir, **kwargs)
    if not results:
        report.warnings.append(f"no result records (*.json) in {results_dir}: nothing to gate")
    return report


# -- rendering ----------------------------------------------------------------

def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}"


def _limit(r: GateRow) -> str:
    if r.limit is None:
        return "-"
    return ("<= " if r.direction != "min" else ">= ") + _num(r.limit)


def _cells(r: GateRow) -> list[str]:
    ci = f"[{_num(r.ci_low)}, {_num(r.ci_high)}]" if r.ci_low is not None else "-"
    change = f"{r.change_pct:+.1f} %" if r.change_pct is not None else "-"
    unit = f" {r.unit}" if r.unit and r.measured is not None else ""
    return [r.device, r.artifact, r.benchmark, r.metric, _num(r.measured) + unit, _limit(r), ci,
            r.verdict.upper(), change]


HEADER = ["device", "artifact", "benchmark", "metric", "measured", "limit", "CI", "verdict",
          "vs baseline"]


def render_table(report: GateReport) -> str:
    lines = text_table(HEADER, [_cells(r) for r in report.rows])
    notes = [f"  {r.device} {r.metric}: {r.note}" for r in report.rows
             if r.note and r.verdict.lower() not in ("pass",)]
    out = "\n".join(lines)
    if notes:
        out += "\n\nnotes:\n" + "\n".join(notes)
    if report.warnings:
        out += "\n\nwarnings:\n" + "\n".join(f"  {w}" for w in report.warnings)
    out += (f"\n\ngate: {report.outcome} (exit {report.exit_code}) - {report.records} record(s)"
            + (f", {report.baseline_records} baseline record(s)" if report.baseline_records
               else ""))
    return out


_ICON = {"pass": "✅", "fail": "❌", "error": "❌", "regressed": "❌", "inconclusive": "⚠️",
         "invalid": "⚠️", "recorded": "ℹ️"}


def render_markdown(report: GateReport) -> str:
    lines = [f"## gem-hil gate: {report.outcome}", "",
             f"{report.records} result record(s)"
             + (f", compared with {report.baseline_records} baseline record(s)"
                if report.baseline_records else "") + f"; exit code {report.exit_code}.", "",
             ]
    rows = []
    for r in report.rows:
        cells = _cells(r)
        cells[7] = f"{_ICON.get(r.verdict, '')} {cells[7]}".strip()
        rows.append(cells)
    lines += markdown_table(HEADER, rows)
    notes = [r for r in report.rows if r.note and r.verdict != "pass"]
    if notes:
        lines += ["", "**Notes**", ""]
        lines += [f"- `{r.device}` {r.artifact} `{r.metric}`: {md_escape(r.note)}" for r in notes]
    if report.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {md_escape(w)}" for w in report.warnings]
    return "\n".join(lines) + "\n"
