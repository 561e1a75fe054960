"""The eval benchmark's host side: the evaluation set pushed to the device, and
the quality block scored from the predictions the device returned.

The device only runs the artifact (firmware/agent/gem_agent.py ``run_eval``):
it gets token ids (and labels, which it does not echo back) and returns one
predicted class and one summed next-token NLL per example. Every figure is
computed here, from those predictions and the host's own labels, with
gem/metrics.py (definitions: docs/quality.md): per-domain F1, cross-domain F1,
per-domain perplexity, forgetting, DSI, GG, CDTR and top-1 agreement with the
fp32 model, each with a bootstrap 95 % CI over examples -- one bootstrap for
all of them, so they are computed from the same resamples.

The references come from the artifact's build (manifest
``quality.eval_reference``): the per-example predictions of the fp32 model and
of the general model before adaptation on the corpus hold-out, which this
module re-reads from the installed packages and matches by digest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gem.config import DOMAINS
from harness.budgets import domain_metric
from harness.errors import AgentError, HarnessError
from harness.registry import registry, setting

EVAL_FORMAT = "gem-eval-set/1"


@registry.table("eval", owner="the eval benchmark",
                help="The eval benchmark (docs/quality.md): how many hold-out examples per "
                     "domain the device runs, and the bootstrap of the quality CIs.")
@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """[eval]: the size of the evaluation set and its confidence intervals."""

    per_domain: int = setting(25, minimum=1, help="hold-out examples per domain pushed to the "
                              "device (the first ones of each domain in the hold-out)")
    resamples: int = setting(1000, minimum=100, help="bootstrap resamples (over examples) of "
                             "the quality figures' 95 % CIs")
    seed: int = setting(0, minimum=0, help="seed of the bootstrap resampling")


@dataclass
class EvalSet:
    """What the device gets (ids, token ids, labels) and what only the host keeps."""

    ids: list[int]  # indices into the corpus hold-out
    input_ids: list[list[int]]
    labels: list[int]
    domains: list[str]
    preds_fp32: list[int]
    preds_general: list[int]
    target: str
    source: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> bytes:
        """The JSON file pushed to the device."""
        return json.dumps({"format": EVAL_FORMAT, "examples": [
            {"id": i, "input_ids": x, "label": y}
            for i, x, y in zip(self.ids, self.input_ids, self.labels, strict=True)]},
            separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload()).hexdigest()


def build_eval_set(manifest: Mapping[str, Any], per_domain: int) -> EvalSet:
    """The first ``per_domain`` hold-out examples of every domain, with the
    build's reference predictions for them; refuses a hold-out that is not the
    one the artifact was built and referenced on."""
    from gem.corpus import CorpusMissingError, load_corpus
    from gem.data import samples_digest
    from gem.tokenizer import encode

    what = f"artifact {manifest.get('model')}-{manifest.get('variant')}"
    ref = (manifest.get("quality") or {}).get("eval_reference")
    if not ref:
        raise HarnessError(f"{what}: its manifest has no quality.eval_reference (built before "
                           "the eval benchmark existed); rebuild it (gem-hil build, or clear "
                           "the artifact cache)")
    try:
        corpus = load_corpus(seed=int(ref["corpus_seed"]))
    except CorpusMissingError as exc:
        raise HarnessError(f"{what}: the eval benchmark needs the corpus on this host: "
                           f"{exc}") from None
    holdout = corpus.holdout
    if samples_digest(holdout) != ref["holdout_sha256"] or \
            len(ref["preds_fp32"]) != len(holdout) or len(ref["preds_general"]) != len(holdout):
        raise HarnessError(f"{what}: the corpus hold-out on this host is not the one the "
                           "artifact was built on (other Debian package versions?); rebuild "
                           "the artifact on this host")
    max_len = int(manifest.get("max_len_tokens") or 1024)
    seen: dict[str, int] = {}
    rows = []
    for i, s in enumerate(holdout):
        if seen.get(s.domain, 0) < per_domain:
            seen[s.domain] = seen.get(s.domain, 0) + 1
            rows.append(i)
    return EvalSet(
        ids=rows,
        input_ids=[encode(holdout[i].text, max_len=max_len) for i in rows],
        labels=[holdout[i].label for i in rows],
        domains=[holdout[i].domain for i in rows],
        preds_fp32=[int(ref["preds_fp32"][i]) for i in rows],
        preds_general=[int(ref["preds_general"][i]) for i in rows],
        target=str(ref.get("adapt_domain") or ""),
        source={"corpus_seed": int(ref["corpus_seed"]), "holdout_sha256": ref["holdout_sha256"],
                "holdout_n": len(holdout), "per_domain": per_domain},
    )


def check_device_output(es: EvalSet, out: Mapping[str, Any] | None, num_classes: int,
                        device: str) -> tuple[list[int], list[tuple[float, int]] | None]:
    """The device's predictions and NLL, refused unless they answer exactly the
    examples pushed, in order, with classes and counts that can be right."""
    if not out:
        raise AgentError(f"{device}: the agent returned no eval block (an agent without "
                         "--eval-file? push the agent again)")
    if list(out.get("ids") or []) != es.ids:
        raise AgentError(f"{device}: the eval predictions are not for the examples pushed "
                         "(ids differ)")
    preds = out.get("preds")
    if not isinstance(preds, list) or len(preds) != len(es.ids) or not all(
            isinstance(p, int) and 0 <= p < num_classes for p in preds):
        raise AgentError(f"{device}: the eval predictions must be {len(es.ids)} class ids in "
                         f"[0, {num_classes})")
    nll = out.get("nll")
    if nll is None:
        return preds, None
    pairs = []
    for x, row in zip(es.input_ids, nll, strict=False):
        n, t = float(row[0]), int(row[1])
        if not math.isfinite(n) or n < 0 or t != len(x) - 1:
            raise AgentError(f"{device}: eval NLL {row} is not a finite, non-negative sum over "
                             f"the {len(x) - 1} targets of its example")
        pairs.append((n, t))
    if len(pairs) != len(es.ids):
        raise AgentError(f"{device}: {len(nll)} eval NLL rows for {len(es.ids)} examples")
    return preds, pairs


def _figures(labels: Sequence[int], preds: Sequence[int], fp32: Sequence[int],
             general: Sequence[int], domains: Sequence[str], nll: Sequence[Any],
             target: str) -> dict[str, float]:
    """Every quality figure of one (re)sample, flat, for the one joint bootstrap."""
    from gem import metrics as m

    f1 = m.per_domain_f1(labels, preds, domains)
    f1_general = m.per_domain_f1(labels, general, domains)
    out = {f"f1/{d}": v for d, v in f1.items()}
    out["cross_domain_f1"] = m.mean_f1(f1)
    out["general/cross_domain_f1"] = m.mean_f1(f1_general)
    out["macro_f1"] = m.macro_f1(list(labels), list(preds))
    out["fp32_top1_agreement"] = m.top1_agreement(preds, fp32)
    # GG = XF1(general) - XF1(this): m.generalization_gap on the per-domain values
    out["generalization_gap"] = out["general/cross_domain_f1"] - out["cross_domain_f1"]
    if target in f1 and len(f1) > 1:
        before, after = m.mean_f1(f1_general, target), m.mean_f1(f1, target)
        out["forgetting"] = m.forgetting(before, after) if before > 0 else math.nan
        out["general_f1_before"], out["general_f1_after"] = before, after
        out["dsi"] = m.dsi_of(f1, target)
        out["cdtr"] = m.cdtr_of(f1, f1_general, target)
    if nll and nll[0] is not None:
        for d, v in m.per_domain_perplexity(list(nll), domains).items():
            out[f"ppl/{d}"] = v
        out["ppl/all"] = m.per_domain_perplexity(list(nll), ["all"] * len(nll))["all"]
    return out


def score(es: EvalSet, preds: list[int], nll: list[tuple[float, int]] | None,
          settings: EvalSettings, runtime_out: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``quality`` block."""
    from gem.metrics import with_ci

    n = len(es.ids)
    col_nll: list[Any] = list(nll) if nll is not None else [None] * n
    res = with_ci(_figures, es.labels, preds, es.preds_fp32, es.preds_general, es.domains,
                  col_nll, target=es.target, resamples=settings.resamples, seed=settings.seed)
    val, ci = res["value"], res["ci95"]

    def fig(key: str) -> dict[str, Any] | None:
        if key not in val or not math.isfinite(val[key]):
            return None if key not in val else {"value": None, "ci95": [None, None]}
        lo, hi = ci[key]
        return {"value": val[key], "ci95": [lo if math.isfinite(lo) else None,
                                            hi if math.isfinite(hi) else None]}

    domains = [d for d in DOMAINS if f"f1/{d}" in val] + sorted(
        k[3:] for k in val if k.startswith("f1/") and k[3:] not in DOMAINS)
    counts = {d: es.domains.count(d) for d in domains}
    return {
        "benchmark": "eval",
        "n_examples": n,
        "counts": counts,
        "target_domain": es.target,
        "eval_set": {**es.source, "sha256": es.sha256, "format": EVAL_FORMAT},
        "units": {"f1": "F1 in [0, 1]", "generalization_gap": "F1 points (reference - this)",
                  "forgetting": "relative drop of the general-task F1 (0..1)",
                  "dsi": "F1 points (target - mean of the others)",
                  "cdtr": "ratio of mean other-domain gain to target gain",
                  "perplexity": "per token; tokens are bytes"},
        "bootstrap": {"over": "examples", "resamples": settings.resamples, "seed": settings.seed,
                      "level": 0.95, "joint": True},
        "f1": {"per_domain": {d: fig(f"f1/{d}") for d in domains},
               "cross_domain": fig("cross_domain_f1"), "macro": fig("macro_f1")},
        "general_reference": {"cross_domain_f1": fig("general/cross_domain_f1"),
                              "general_f1_before": fig("general_f1_before")},
        "general_f1_after": fig("general_f1_after"),
        "fp32_top1_agreement": fig("fp32_top1_agreement"),
        "generalization_gap": fig("generalization_gap"),
        "forgetting": fig("forgetting"),
        "dsi": fig("dsi"),
        "cdtr": fig("cdtr"),
        "perplexity": None if nll is None else {
            "tokens": "bytes", "all": fig("ppl/all"),
            "per_domain": {d: fig(f"ppl/{d}") for d in domains}},
        "lm_source": runtime_out.get("lm_source"),
        "truncated_examples": runtime_out.get("truncated_examples"),
        "device_seconds": {"classify_s": runtime_out.get("classify_s"),
                           "lm_s": runtime_out.get("lm_s")},
        # raw per-example data: every figure above can be recomputed from these
        "examples": {"ids": es.ids, "labels": es.labels, "domains": es.domains,
                     "device_preds": preds, "fp32_preds": es.preds_fp32,
                     "general_preds": es.preds_general,
                     "device_nll": None if nll is None else [list(p) for p in nll]},
    }


def quality_measurements(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Budget measurements from a record's quality block (harness.budgets)."""
    from harness.budgets import Measurement

    q = rec.get("quality") or {}
    out: dict[str, Measurement] = {}
    if not q:
        return out

    def meas(f: Mapping[str, Any] | None) -> Measurement:
        if not f or f.get("value") is None:
            return Measurement(None)
        return Measurement(f["value"], *f["ci95"])

    for d, f in (q.get("f1") or {}).get("per_domain", {}).items():
        out[domain_metric(d)] = meas(f)
    out["cross_domain_f1"] = meas((q.get("f1") or {}).get("cross_domain"))
    out["generalization_gap"] = meas(q.get("generalization_gap"))
    out["forgetting"] = meas(q.get("forgetting"))
    out["fp32_top1_agreement"] = meas(q.get("fp32_top1_agreement"))
    return out


def quality_summary_line(q: Mapping[str, Any] | None) -> str | None:
    """One line for summaries: the headline quality figures with their CIs."""
    if not q:
        return None

    def f(key: Any, name: str) -> str:
        x = key if isinstance(key, Mapping) or key is None else q.get(key)
        if not x or x.get("value") is None:
            return f"{name} n/a"
        lo, hi = x["ci95"]
        band = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        return f"{name} {x['value']:.3f}{band}"

    ppl = (q.get("perplexity") or {}).get("all")
    parts = [f((q.get("f1") or {}).get("cross_domain"), "cross-domain F1"),
             f("fp32_top1_agreement", "fp32 agreement"), f("generalization_gap", "GG"),
             f("forgetting", "forgetting"), f("dsi", "DSI"), f("cdtr", "CDTR")]
    if ppl:
        parts.append(f(ppl, "perplexity"))
    return f"quality ({q.get('n_examples')} examples, 95% CI): " + ", ".join(parts)
