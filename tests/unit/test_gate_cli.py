"""`gem-hil gate` on the fixture records: exit codes, table, Markdown, profiles, errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.gate import add_gate_parser, handle_gate
from harness.gate import load_records, run_gate

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "tests" / "data" / "records"
BASELINE = RECORDS / "baseline"


def gate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gem-hil")
    add_gate_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["gate", *argv])
    assert args.func is handle_gate
    return args.func(args)


@pytest.mark.parametrize("folder,code", [
    ("passing", 0), ("failing", 1), ("regressed", 1), ("inconclusive", 2), ("invalid", 2),
    ("error", 1)])
def test_exit_codes_on_fixtures(folder, code, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert gate("--results", str(RECORDS / folder), "--baseline", str(BASELINE),
                "--no-profiles") == code
    out = capsys.readouterr().out
    assert "device" in out and "vs baseline" in out
    assert f"(exit {code})" in out


def test_what_the_table_says(capsys):
    gate("--results", str(RECORDS / "regressed"), "--baseline", str(BASELINE), "--no-profiles")
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines()
                if "fixture-pi4" in ln and "regression_latency_median" in ln)
    assert "REGRESSED" in line and "+1" in line  # about +10 % vs baseline
    gate("--results", str(RECORDS / "inconclusive"), "--no-profiles")
    out = capsys.readouterr().out
    assert "INCONCLUSIVE" in out and "straddles the limit" in out
    gate("--results", str(RECORDS / "invalid"), "--no-profiles")
    out = capsys.readouterr().out
    assert "INVALID" in out and "min_count" in out


def test_regression_only_fails_with_a_baseline():
    rep = run_gate(RECORDS / "regressed")
    assert rep.exit_code == 0  # within budgets: only the baseline comparison can catch it


def test_markdown_and_github_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    md = tmp_path / "out" / "gate.md"
    js = tmp_path / "gate.json"
    assert gate("--results", str(RECORDS / "failing"), "--baseline", str(BASELINE),
                "--no-profiles", "--markdown", str(md), "--json", str(js)) == 1
    text = md.read_text()
    assert text.startswith("## gem-hil gate: FAIL") and "| fixture-pi4 |" in text
    assert "❌ FAIL" in text
    assert summary.read_text() == "earlier step\n" + text  # appended, not overwritten
    data = json.loads(js.read_text())
    assert data["exit_code"] == 1 and any(r["verdict"] == "fail" for r in data["rows"])


def test_profiles_override_record_limits(tmp_path, capsys):
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "fixture-phone.toml").write_text(
        'name = "fixture-phone"\ntransport = "local"\nplatform = "android"\n'
        'runtime = "onnxruntime"\n[budgets.default]\nlatency_p95_ms = 10.0\n')
    code = gate("--results", str(RECORDS / "passing"), "--targets-dir", str(targets))
    out = capsys.readouterr().out
    assert "not used" not in out, out  # a gate that cannot load profiles is the bug here
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if "fixture-phone" in ln and "p95" in ln)
    assert "<= 10" in line and "FAIL" in line
    assert gate("--results", str(RECORDS / "passing"), "--no-profiles") == 0


def test_usage_and_input_errors_never_exit_2(tmp_path, capsys):
    """2 means "inconclusive": a usage error (64) or unreadable input (3) must not say it."""
    assert gate("--results", str(RECORDS / "passing"), "--history", "https://x") == 64
    assert "expected sqlite:///FILE" in capsys.readouterr().err
    assert gate("--results", str(tmp_path / "missing"), "--no-profiles") == 3
    assert "not a directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gate("--results", str(empty), "--no-profiles") == 2  # no records: we do not know
    assert "nothing to gate" in capsys.readouterr().out
    (empty / "bad.json").write_text("{not json")
    assert gate("--results", str(empty), "--no-profiles") == 3
    assert "bad.json" in capsys.readouterr().err
    assert gate("--results", str(RECORDS / "passing"), "--targets-dir",
                str(tmp_path / "no")) == 64
    assert gate("--results", str(RECORDS / "passing"), "--confidence", "1.5") == 64


def test_argparse_usage_error_exits_64():
    res = subprocess.run([sys.executable, "-m", "harness.cli", "gate", "--results", ".",
                          "--no-such-flag"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 64, res.stderr
    assert "unrecognized arguments: --no-such-flag" in res.stderr


def test_fixtures_match_the_published_schema():
    from harness.record import schema_errors

    records = [r for d in sorted(RECORDS.iterdir()) if d.is_dir() for r in load_records(d)]
    assert len(records) == 14
    for path, rec in records:
        assert schema_errors(rec) == [], path


@pytest.mark.parametrize("entry", [["harness.cli.gate"], ["harness.cli", "gate"]])
def test_entry_points_run_as_a_subprocess(entry):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    res = subprocess.run([sys.executable, "-m", *entry, "--results",
                          str(RECORDS / "regressed"), "--baseline", str(BASELINE),
                          "--no-profiles"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    # an unwired sub-command is argparse's "invalid choice" (64 here): a failure, not a skip
    assert "invalid choice" not in res.stderr, res.stderr
    assert res.returncode == 1, res.stderr
    assert "gate: FAIL (exit 1)" in res.stdout


def test_several_baseline_nights_are_all_used(tmp_path, capsys):
    import shutil

    base = tmp_path / "nights"
    base.mkdir()
    for night in range(3):  # the same baseline record three times = no run-to-run spread
        rec = json.loads((BASELINE / "fixture-pi4-00000001.json").read_text())
        rec["created_utc"] = f"2026-11-1{night}T10:00:00Z"
        (base / f"night{night}.json").write_text(json.dumps(rec))
    shutil.copy(BASELINE / "fixture-phone-00000002.json", base)
    assert gate("--results", str(RECORDS / "regressed"), "--baseline", str(base),
                "--no-profiles") == 1
    out = capsys.readouterr().out
    assert "3 baseline / 1 candidate boot(s)" in out
    assert gate("--results", str(RECORDS / "passing"), "--baseline", str(base),
                "--no-profiles", "--run-sd", "0.01") == 0


def test_unstable_record_passes_only_with_the_margin(tmp_path, capsys):
    """The gate re-applies the instability margin: a p95 whose upper end (71 ms) is under
    its 100 ms limit but not under 50 ms is inconclusive once the run is unstable."""
    rec = json.loads((RECORDS / "passing" / "fixture-pi4-00000011.json").read_text())
    folder = tmp_path / "unstable"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(rec))
    assert gate("--results", str(folder), "--no-profiles") == 0
    rec["validity"]["stability"] = {"stable": False, "reasons": ["spread 0.4 > 0.1"]}
    (folder / "a.json").write_text(json.dumps(rec))
    assert gate("--results", str(folder), "--no-profiles") == 2
    assert "unstable run" in capsys.readouterr().out


def test_ab_comparison_in_a_record_gates_it(tmp_path, capsys):
    rec = json.loads((RECORDS / "passing" / "fixture-pi4-00000011.json").read_text())
    folder = tmp_path / "ab"
    folder.mkdir()
    comparison = {"verdict": "regressed", "ratio_median": 1.08, "ci": [1.05, 1.11],
                  "min_effect": 0.03, "median_baseline_ms": 40.0, "median_candidate_ms": 43.2,
                  "reason": "median +8.00 %"}
    rec["ab"] = {"baseline_artifact": {"model": "tiny", "variant": "fp32"},
                 "baseline_samples_ms": [40.0] * 5, "comparison": comparison}
    (folder / "a.json").write_text(json.dumps(rec))
    assert gate("--results", str(folder), "--no-profiles") == 1
    out = capsys.readouterr().out
    assert "ab_latency_median" in out and "regressed" in out
    comparison["verdict"] = "unchanged"
    (folder / "a.json").write_text(json.dumps(rec))
    assert gate("--results", str(folder), "--no-profiles") == 0
