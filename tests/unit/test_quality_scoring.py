"""The eval benchmark's host side without a device: scoring, refusing bad
device output, the quality budgets and where they apply."""

from __future__ import annotations

import pytest

from gem import metrics as m
from harness.budgets import METRICS, QUALITY_METRICS, benchmark_scope, record_measurements
from harness.errors import AgentError, UnknownMetricError
from harness.quality import EvalSet, EvalSettings, check_device_output, score
from tests.unit.test_quality_metrics import DOMAINS, LABELS, PREDS, REF

TARGET = "C"


def eval_set() -> EvalSet:
    return EvalSet(ids=list(range(100, 112)), input_ids=[[257, 65 + i, 258] for i in range(12)],
                   labels=LABELS, domains=DOMAINS, preds_fp32=PREDS, preds_general=REF,
                   target=TARGET, source={"per_domain": 4, "holdout_sha256": "x"})


def test_score_is_gem_metrics_on_the_device_predictions() -> None:
    es = eval_set()
    nll = [(2.0 + i, 2) for i in range(12)]
    q = score(es, PREDS, nll, EvalSettings(resamples=200), {"lm_source": "graphs"})
    assert q["f1"]["per_domain"]["C"]["value"] == pytest.approx(8 / 9)
    assert q["forgetting"]["value"] == pytest.approx(32 / 217)  # docs/quality.md example
    assert q["cdtr"]["value"] == pytest.approx(-18 / 35)
    assert q["dsi"]["value"] == pytest.approx(m.domain_specialization_index(
        LABELS, PREDS, DOMAINS, TARGET))
    assert q["generalization_gap"]["value"] == pytest.approx(
        m.generalization_gap(LABELS, PREDS, REF, DOMAINS))
    assert q["fp32_top1_agreement"]["value"] == 1.0  # the device agreed with fp32 everywhere
    assert q["perplexity"]["per_domain"]["A"]["value"] == pytest.approx(
        m.per_domain_perplexity(nll, DOMAINS)["A"])
    assert q["examples"]["device_preds"] == PREDS and q["n_examples"] == 12
    for key in ("forgetting", "dsi", "generalization_gap"):
        lo, hi = q[key]["ci95"]
        assert lo <= q[key]["value"] <= hi
    # another device answer, another score: nothing comes from the references alone
    other = score(es, REF, None, EvalSettings(resamples=100), {})
    assert other["generalization_gap"]["value"] == 0.0 and other["forgetting"]["value"] == 0.0
    assert other["perplexity"] is None
    meas = record_measurements({"quality": q})
    assert meas["forgetting"].value == q["forgetting"]["value"]
    assert meas["domain_f1_C"].value == pytest.approx(8 / 9)


def test_device_output_is_checked() -> None:
    es = eval_set()
    good = {"ids": es.ids, "preds": PREDS, "nll": [[1.0, 2]] * 12}
    preds, nll = check_device_output(es, good, 8, "dev")
    assert preds == PREDS and nll == [(1.0, 2)] * 12
    for bad, what in (
        (None, "no eval block"),
        ({**good, "ids": es.ids[::-1]}, "ids differ"),
        ({**good, "preds": PREDS[:-1]}, "class ids"),
        ({**good, "preds": [9] * 12}, "class ids"),
        ({**good, "nll": [[float("nan"), 2]] * 12}, "finite"),
        ({**good, "nll": [[1.0, 5]] * 12}, "targets"),
        ({**good, "nll": [[1.0, 2]] * 3}, "NLL rows"),
    ):
        with pytest.raises(AgentError, match=what):
            check_device_output(es, bad, 8, "dev")


def test_quality_budgets_are_registered_metrics() -> None:
    assert {"domain_f1_healthcare", "domain_f1_domain_adaptive", "generalization_gap",
            "forgetting", "fp32_top1_agreement", "cross_domain_f1"} <= set(QUALITY_METRICS)
    assert all(not METRICS[q].timing for q in QUALITY_METRICS)  # gated on emulators too
    assert METRICS["generalization_gap"].direction == "max"
    assert METRICS["domain_f1_law"].direction == "min"
    # the latency benchmark leaves them to eval; eval leaves generation timing to latency
    assert set(benchmark_scope("latency")) == set(QUALITY_METRICS)
    assert "ttft_p95_ms" in benchmark_scope("eval")


def test_quality_budget_in_a_profile_is_checked_at_load(tmp_path) -> None:
    from harness.profiles import load_profile

    base = (tmp_path / "x").parent
    text = ('name = "q"\ntransport = "local"\nplatform = "linux"\nruntime = "onnxruntime"\n'
            '[budgets.tiny-int8]\ndomain_f1_healthcare = 0.1\nforgetting = 0.5\n'
            '[eval]\nper_domain = 5\n')
    (base / "q.toml").write_text(text)
    prof = load_profile("q", base)
    assert prof.budgets_for("tiny", "int8") == {"domain_f1_healthcare": 0.1, "forgetting": 0.5}
    assert prof.settings["eval"].per_domain == 5
    (base / "q.toml").write_text(text.replace("domain_f1_healthcare", "domain_f1_medicine"))
    with pytest.raises(UnknownMetricError, match="domain_f1_medicine"):
        load_profile("q", base)
    (base / "q.toml").write_text(text.replace("per_domain = 5", "per_domain = 0"))
    with pytest.raises(Exception, match="per_domain"):
        load_profile("q", base)
