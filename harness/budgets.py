"""Budgets, the metrics they can name, and pass / fail / inconclusive verdicts.

A verdict compares a confidence interval with a limit, not a point estimate:
pass when the whole interval is within the limit, fail when the whole interval
is beyond it, inconclusive otherwise. A gate that flips on noise gets ignored;
one that says "not sure yet, take more samples" does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from gem.config import DOMAINS
from harness.errors import ConfigError, UnknownMetricError

if TYPE_CHECKING:
    from harness.profiles import Section


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: str  # "max": measured must stay at or under the limit; "min": at or over
    timing: bool  # a wall-clock figure: meaningless on an emulator
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("latency_p50_ms", "ms", "max", True, "median per-inference latency"),
    Metric("latency_p90_ms", "ms", "max", True, "90th percentile latency"),
    Metric("latency_p95_ms", "ms", "max", True, "95th percentile latency"),
    Metric("latency_p99_ms", "ms", "max", True, "99th percentile latency"),
    Metric("latency_mean_ms", "ms", "max", True, "mean latency"),
    Metric("cold_start_ms", "ms", "max", True, "session creation + first inference"),
    Metric("peak_rss_mb", "MB", "max", False, "peak resident memory of the agent (VmHWM)"),
    Metric("model_size_mb", "MB", "max", False, "artifact size on the device"),
    Metric("parity_max_abs_diff", "1", "max", False,
           "max |device output - reference output|"),
    Metric("top1_agreement", "1", "min", False,
           "fraction of reference rows whose argmax matches"),
    Metric("energy_per_inference_mj", "mJ", "max", True, "energy per inference above idle"),
    Metric("cpu_fallback_ops", "ops", "max", False,
           "ops meant for the accelerator that ran on the CPU (0 when no accelerator is used)"),
    Metric("ttft_p95_ms", "ms", "max", True,
           "time to first token of the ppN prefill (95th percentile over runs)"),
    Metric("decode_token_p95_ms", "ms", "max", True,
           "per-token decode latency with the KV cache (95th percentile, tgM)"),
    Metric("decode_tokens_per_s", "tokens/s", "min", True,
           "decode throughput: 1000 / mean per-token latency of the tgM runs (GEM's "
           "tokens are bytes)"),
)}


def domain_metric(domain: str) -> str:
    """Budget metric of a domain's F1 floor: ``domain_f1_<domain>`` (- becomes _)."""
    return "domain_f1_" + domain.replace("-", "_")


#: accuracy budgets, measured by the eval benchmark on the device (docs/quality.md);
#: not timing, so gated on emulators too (an int8 drift on an arm64 runtime is real)
METRICS.update({m.name: m for m in (
    *(Metric(domain_metric(d), "F1", "min", False,
             f"F1 floor of the {d} domain on the eval set (device predictions)")
      for d in DOMAINS),
    Metric("cross_domain_f1", "F1", "min", False,
           "mean per-domain F1 over all domains (device predictions)"),
    Metric("generalization_gap", "F1", "max", False,
           "GG: cross-domain F1 of the general fp32 model minus this artifact's on the device"),
    Metric("forgetting", "1", "max", False,
           "relative drop of the general-task F1 (domains other than the adapted one) "
           "against the general model"),
    Metric("fp32_top1_agreement", "1", "min", False,
           "share of eval examples where the device's class equals the fp32 model's"),
)})
#: budget metrics of the eval benchmark
QUALITY_METRICS = (*(domain_metric(d) for d in DOMAINS), "cross_domain_f1",
                   "generalization_gap", "forgetting", "fp32_top1_agreement")

#: budget metrics of the generative benchmarks (prefill + decode graphs)
GENERATION_METRICS = ("ttft_p95_ms", "decode_token_p95_ms", "decode_tokens_per_s")
#: artifact formats whose export has no prefill/decode graphs yet (docs/gem.md)
FORMATS_WITHOUT_GENERATION = frozenset({"tflite"})


def not_applicable(fmt: str | None) -> dict[str, str]:
    """Budgets that cannot apply to an artifact of this format, with the reason: they
    are recorded as such, not gated and not left inconclusive."""
    if fmt not in FORMATS_WITHOUT_GENERATION:
        return {}
    return {m: f"{fmt} artifacts ship no prefill/decode graphs yet: not measured"
            for m in GENERATION_METRICS}


def benchmark_scope(name: str) -> dict[str, str]:
    """Budgets another benchmark measures: recorded as not measured here, neither
    gated nor left inconclusive (quality: the eval benchmark; the eval benchmark
    runs no generation timing)."""
    if name == "eval":
        return {m: "the eval benchmark times no generation: see the latency benchmark"
                for m in GENERATION_METRICS}
    return {m: "measured by the eval benchmark (pytest: gem_bench('eval'); CLI: "
               "gem-hil bench --benchmark eval)" for m in QUALITY_METRICS}


def unknown_metric(name: str, where: str) -> UnknownMetricError:
    return UnknownMetricError(
        f"{where}: unknown budget metric {name!r}; known metrics: {', '.join(sorted(METRICS))}"
    )


def check_budget_table(table: Section) -> dict[str, float]:
    """Validate one [budgets.X] table from a profile."""
    out: dict[str, float] = {}
    for key in list(table.data):
        if key not in METRICS:
            raise unknown_metric(key, table.where(key))
        out[key] = table.get(key, float)
    return out


def parse_budget_override(text: str) -> tuple[str, float]:
    """`latency_p95_ms=40` from the command line."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ConfigError(f"--budget {text!r}: expected METRIC=VALUE, e.g. latency_p95_ms=40")
    if name not in METRICS:
        raise unknown_metric(name, f"--budget {text!r}")
    try:
        limit = float(value)
    except ValueError:
        raise ConfigError(f"--budget {text!r}: {value!r} is not a number") from None
    if math.isnan(limit):
        raise ConfigError(f"--budget {text!r}: NaN is not a limit")
    return name, limit


@dataclass(frozen=True)
class Measurement:
    """A measured value with the interval it is known to within.

    An end that is None is unbounded on that side (too few samples to bound
    it); an exactly known value has both ends equal to it (exact()).
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def exact(cls, value: float | None) -> Measurement:
        return cls(value, value, value)


@dataclass(frozen=True)
class Verdict:
    metric: str
    unit: str
    direction: str
    limit: float
    measured: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str  # pass | fail | inconclusive | recorded
    source: str  # profile | cli | emulator
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self, device: str, artifact: str) -> str:
        op = "<=" if self.direction == "max" else ">="
        ci = (f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
              if self.ci_low is not None else "n/a")
        return (f"{self.verdict.upper()}: device {device}, artifact {artifact}: {self.metric} "
                f"measured {_fmt(self.measured)} {self.unit} (95% CI {ci}), limit {op} "
                f"{_fmt(self.limit)} {self.unit} [{self.source}]"
                + (f" - {self.reason}" if self.reason else ""))


def _fmt(x: float | None) -> str:
    if x is None:
        return "null"
    return f"{x:.4g}"


#: how far inside its limit an unstable run's interval must lie for a pass
#: (docs/statistics.md): a run disturbed by load or drift passes only by a
#: margin the disturbance cannot have bridged, else it is inconclusive.
UNSTABLE_MARGIN = 0.5

#: what to change when an interval straddles its limit, by what ended the run
MORE_SAMPLES_HINT = {
    "max_count": "raise [run] max_count (the run reached it first)",
    "max_duration": "raise [run] max_duration_s (the run reached it first)",
}
DEFAULT_HINT = "raise [run] min_count / min_duration_s"


def decide(metric: Metric, limit: float, m: Measurement, stopped_by: str | None = None
           ) -> tuple[str, str]:
    """pass / fail / inconclusive from the interval's ends.

    A missing end (None) is unbounded: too few samples to bound a tail
    percentile from above never passes it.
    """
    if m.value is None:
        return "inconclusive", "not measured on this device (no sensor or no data)"
    lo = m.ci_low if m.ci_low is not None else -math.inf
    hi = m.ci_high if m.ci_high is not None else math.inf
    if metric.direction == "max":
        if hi <= limit:
            return "pass", ""
        if lo > limit:
            return "fail", ""
    else:
        if lo >= limit:
            return "pass", ""
        if hi < limit:
            return "fail", ""
    hint = MORE_SAMPLES_HINT.get(stopped_by or "", DEFAULT_HINT)
    if math.isinf(hi) or math.isinf(lo):
        return "inconclusive", ("too few effective samples to bound it on the "
                                f"{'upper' if math.isinf(hi) else 'lower'} side: {hint}")
    return "inconclusive", f"the confidence interval straddles the limit: take more samples " \
                           f"({hint})"


def unstable_verdict(metric: Metric, limit: float, m: Measurement, verdict: str,
                     reason: str) -> tuple[str, str]:
    """A pass of a timing metric from an unstable run needs UNSTABLE_MARGIN of room."""
    if verdict != "pass":
        return verdict, reason
    room = limit * (1.0 - UNSTABLE_MARGIN) if metric.direction == "max" \
        else limit * (1.0 + UNSTABLE_MARGIN)
    inside = (m.ci_high is not None and m.ci_high <= room) if metric.direction == "max" \
        else (m.ci_low is not None and m.ci_low >= room)
    if inside:
        return "pass", (f"unstable run: passes only because its interval is within "
                        f"{_fmt(room)} {metric.unit} ({UNSTABLE_MARGIN:.0%} margin)")
    return "inconclusive", (f"unstable run: a pass needs the interval within {_fmt(room)} "
                            f"{metric.unit} ({UNSTABLE_MARGIN:.0%} margin); fix the instability "
                            "(see validity.stability) and rerun")


def evaluate(budgets: Mapping[str, float], measurements: Mapping[str, Measurement],
             sources: Mapping[str, str], emulated: bool = False,
             emulator_budgets: Mapping[str, float] | None = None, *,
             stopped_by: str | None = None, unstable: bool = False,
             inapplicable: Mapping[str, str] | None = None) -> list[Verdict]:
    """One verdict per budget.

    stopped_by (the agent's run.stopped_by) picks the hint of an inconclusive
    verdict; unstable (validity.stability) demands UNSTABLE_MARGIN of room
    for a pass of a timing metric.

    On an emulated device wall-clock metrics are recorded, not gated: TCG
    timings say nothing about the real board. A profile can still gate them
    against an emulator budget of its own ([budgets.emulator]).
    """
    emulator_budgets = emulator_budgets or {}
    out = []
    names = list(budgets) + [n for n in emulator_budgets if n not in budgets]
    for name in names:
        metric = METRICS[name]
        m = measurements.get(name, Measurement(None))
        source = sources.get(name, "profile")
        if emulated and metric.timing:
            if name in emulator_budgets and source != "cli":
                limit, source = emulator_budgets[name], "emulator"
            elif source == "cli":
                limit = budgets[name]
            else:
                out.append(Verdict(name, metric.unit, metric.direction, budgets[name], m.value,
                                   m.ci_low, m.ci_high, "recorded", source,
                                   "emulated device: timing recorded, not gated"))
                continue
        else:
            if name not in budgets:
                continue
            limit = budgets[name]
        if inapplicable and name in inapplicable:
            out.append(Verdict(name, metric.unit, metric.direction, limit, m.value, m.ci_low,
                               m.ci_high, "recorded", source, inapplicable[name]))
            continue
        verdict, reason = decide(metric, limit, m, stopped_by)
        if unstable and metric.timing:
            verdict, reason = unstable_verdict(metric, limit, m, verdict, reason)
        out.append(Verdict(name, metric.unit, metric.direction, limit, m.value, m.ci_low,
                           m.ci_high, verdict, source, reason))
    return out


def overall(verdicts: Iterable[Verdict | Mapping[str, Any]]) -> str:
    kinds = {v["verdict"] if isinstance(v, Mapping) else v.verdict for v in verdicts}
    if "fail" in kinds:
        return "fail"
    if "inconclusive" in kinds:
        return "inconclusive"
    return "pass"


MIB = 1024 * 1024


def _ci(pair: Any) -> tuple[float | None, float | None]:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return pair[0], pair[1]
    return None, None


def record_measurements(rec: Mapping[str, Any]) -> dict[str, Measurement]:
    """Measurement (value + CI) of every metric the record holds; missing parts are None."""
    out: dict[str, Measurement] = {}
    lat = rec.get("latency_ms") or {}
    for q in (50, 90, 95, 99):
        if f"p{q}_ms" in lat:
            out[f"latency_p{q}_ms"] = Measurement(lat[f"p{q}_ms"], *_ci(lat.get(f"p{q}_ci_ms")))
    if "mean_ms" in lat:
        out["latency_mean_ms"] = Measurement(lat["mean_ms"], *_ci(lat.get("mean_ci_ms")))
    cold = rec.get("cold_start_ms") or {}
    out["cold_start_ms"] = Measurement.exact(cold.get("total_ms"))
    out["peak_rss_mb"] = Measurement.exact((rec.get("memory") or {}).get("peak_rss_mb"))
    size = (rec.get("artifact") or {}).get("size_bytes")
    out["model_size_mb"] = Measurement.exact(size / MIB if size is not None else None)
    parity = rec.get("parity") or {}
    out["parity_max_abs_diff"] = Measurement.exact(parity.get("max_abs_diff"))
    out["top1_agreement"] = Measurement.exact(parity.get("top1_agreement"))
    energy = rec.get("energy") or {}
    e = energy.get("energy_per_inference_mj")
    lo, hi = _ci(energy.get("energy_per_inference_ci_mj"))
    out["energy_per_inference_mj"] = Measurement(e, lo if lo is not None else e,
                                                 hi if hi is not None else e)
    fallback = (rec.get("op_placement") or {}).get("cpu_fallback_ops")
    out["cpu_fallback_ops"] = Measurement.exact(float(fallback) if fallback is not None else None)
    from harness.quality import quality_measurements

    out.update(quality_measurements(rec))
    gen = rec.get("generation") or {}
    if gen:
        ttft = gen["prefill"]["ttft_ms"]
        out["ttft_p95_ms"] = Measurement(ttft["p95_ms"], *_ci(ttft.get("p95_ci_ms")))
        tok = gen["decode"]["token_latency_ms"]
        out["decode_token_p95_ms"] = Measurement(tok["p95_ms"], *_ci(tok.get("p95_ci_ms")))
        rate = gen["decode"]["tokens_per_s"]
        if "throughput_per_s" in rate:
            out["decode_tokens_per_s"] = Measurement(rate["throughput_per_s"],
                                                     *_ci(rate.get("throughput_ci_per_s")))
        else:  # records from before the throughput field
            out["decode_tokens_per_s"] = Measurement(rate["median_per_s"],
                                                     *_ci(rate.get("median_ci_per_s")))
    return out
