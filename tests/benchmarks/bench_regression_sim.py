"""Simulation: how many samples does the regression check need, and how often does it lie?

    PYTHONPATH=. python tests/benchmarks/bench_regression_sim.py [--trials 1000] [--quick]

Latencies are drawn like real ones: log-normal body (median 40 ms, shape sigma)
plus a 2 % tail 1.5-3x slower, and optionally a run-to-run shift (each run's
median moves by a log-normal factor of sd `run_sd`: thermal state, clocks and
background load differ between the baseline night and the candidate night; a
test that only looks at within-run noise cannot see it).

For each sample count n the script runs `trials` independent (baseline,
candidate) pairs with the candidate's true median 1.00x (false alarm if the
verdict is "regressed") and 1.05x (detected if "regressed"), and reports:

* detection probability of a 5 % regression (goal >= 95 %)
* false-alarm rate at no change (goal <= 1 %)
* inconclusive rate at no change (the gate's exit 2: friction, not danger)
* device time per run = n x mean latency (the candidate's run; the baseline
  run is paid once per baseline, not per candidate)

Rules compared: harness.regression.compare (bootstrap CI of the median ratio +
Mann-Whitney + 3 % minimum effect), Mann-Whitney alone (p < 0.05), and the
naive point rule "median more than 3 % slower". Finally a sequential
early-stopping simulation of harness.stats.sequential_check.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.regression import compare, compare_runs, mann_whitney_u  # noqa: E402
from harness.stats import look_schedule, min_decisive_count, sequential_check  # noqa: E402
from tests.benchmarks.goals import word  # noqa: E402

MEDIAN_MS = 40.0
DETECT_GOAL, FALSE_ALARM_GOAL = 0.95, 0.01  # docs/statistics.md


def draw(rng: np.random.Generator, n: int, sigma: float, factor: float,
         run_sd: float) -> np.ndarray:
    shift = math.exp(rng.normal(0.0, run_sd)) if run_sd > 0 else 1.0
    x = MEDIAN_MS * factor * shift * rng.lognormal(0.0, sigma, n)
    tail = rng.random(n) < 0.02
    x[tail] *= rng.uniform(1.5, 3.0, int(tail.sum()))
    return x


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a proportion (so a '0 %' says how sure it is)."""
    if n == 0:
        return 0.0, 1.0
    z = 1.96
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def simulate(n: int, sigma: float, run_sd: float, trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    res = {"ours_fa": 0, "ours_det": 0, "ours_inc": 0, "mw_fa": 0, "mw_det": 0,
           "naive_fa": 0, "naive_det": 0, "mean_ms": 0.0}
    for t in range(trials):
        for factor, tag in ((1.0, "fa"), (1.05, "det")):
            base = draw(rng, n, sigma, 1.0, run_sd)
            cand = draw(rng, n, sigma, factor, run_sd)
            r = compare(base, cand, seed=t)
            res[f"ours_{tag}"] += r.verdict == "regressed"
            if tag == "fa":
                res["ours_inc"] += r.verdict == "inconclusive"
                res["mean_ms"] += float(cand.mean())
            _, p = mann_whitney_u(cand, base)
            res[f"mw_{tag}"] += p < 0.05 and np.median(cand) > np.median(base)
            res[f"naive_{tag}"] += np.median(cand) > 1.03 * np.median(base)
    res["mean_ms"] /= trials
    return res


def regression_table(sigmas, run_sds, ns, trials, seed) -> list[str]:
    lines = []
    for run_sd in run_sds:
        for sigma in sigmas:
            lines += ["", f"### sigma = {sigma} (CV ~{sigma * 100:.0f} %), run-to-run shift sd = "
                          f"{run_sd * 100:g} %, {trials} trials per cell", "",
                      "| n per run | device time / run | detect 5 % (ours) | false alarm (ours) "
                      "| inconclusive at 0 % (ours) | MW alone: detect / false alarm "
                      "| naive >3 %: detect / false alarm | goal >= 95 % / <= 1 % (ours) |",
                      "|---|---|---|---|---|---|---|---|"]
            best = None
            for n in ns:
                r = simulate(n, sigma, run_sd, trials, seed + n)
                det, fa, inc = r["ours_det"] / trials, r["ours_fa"] / trials, \
                    r["ours_inc"] / trials
                fa_hi = wilson(r["ours_fa"], trials)[1]
                dev_s = n * r["mean_ms"] / 1000.0
                lines.append(
                    f"| {n} | {dev_s:.1f} s | {det:.1%} | {fa:.1%} (95 % CI up to {fa_hi:.1%}) | "
                    f"{inc:.1%} | {r['mw_det'] / trials:.1%} / {r['mw_fa'] / trials:.1%} | "
                    f"{r['naive_det'] / trials:.1%} / {r['naive_fa'] / trials:.1%} | "
                    f"{word(det >= DETECT_GOAL and fa <= FALSE_ALARM_GOAL)} |")
                if best is None and det >= 0.95 and fa <= 0.01:
                    best = (n, dev_s)
            lines.append("")
            lines.append("Least n meeting >= 95 % detection and <= 1 % false alarms: "
                         + (f"**{best[0]} samples ({best[1]:.1f} s of device time at a 40 ms "
                            "median)**" if best else "**none of the tested n**"))
    return lines


def multirun_table(trials: int, seed: int, sigma: float = 0.10, run_sd: float = 0.01,
                   k_base: int = 5) -> list[str]:
    """compare_runs with k_base baseline runs (nightly history) and k candidate runs."""
    lines = ["", f"### Several runs per side (compare_runs): sigma = {sigma}, run-to-run shift sd "
                 f"= {run_sd * 100:g} %, {k_base} baseline runs, {trials} trials per cell", "",
             "| candidate runs x n | candidate device time | confidence | detect 5 % "
             "| false alarm | inconclusive at 0 % | goal >= 95 % / <= 1 % |",
             "|---|---|---|---|---|---|---|"]
    for n in (200, 300):
        for k in (1, 2, 3):
            for conf in (0.95, 0.99):
                rng = np.random.default_rng(seed + 7 * n + k)
                det = fa = inc = 0
                for t in range(trials):
                    for factor in (1.0, 1.05):
                        base = [draw(rng, n, sigma, 1.0, run_sd) for _ in range(k_base)]
                        cand = [draw(rng, n, sigma, factor, run_sd) for _ in range(k)]
                        v = compare_runs(base, cand, confidence=conf, resamples=1000,
                                         seed=t).verdict
                        if factor == 1.0:
                            fa += v == "regressed"
                            inc += v == "inconclusive"
                        else:
                            det += v == "regressed"
                dev = k * n * MEDIAN_MS * 1.04 / 1000.0  # mean of the model ~1.04 x median
                ok = det / trials >= DETECT_GOAL and fa / trials <= FALSE_ALARM_GOAL
                lines.append(f"| {k} x {n} | {dev:.0f} s | {conf} | {det / trials:.1%} | "
                             f"{fa / trials:.1%} (95 % CI up to {wilson(fa, trials)[1]:.1%}) | "
                             f"{inc / trials:.1%} | "
                             f"{word(ok)} |")
    return lines


def sequential_table(trials: int, seed: int) -> list[str]:
    """Samples needed before sequential_check stops, by where true p95 sits vs the limit."""
    rng = np.random.default_rng(seed)
    sigma, limit = 0.10, 100.0
    looks = look_schedule(min_decisive_count(95, 0.95, 10), 2000, 10)
    # true p95 of the model (body + tail), estimated once from a huge draw
    big = draw(rng, 400_000, sigma, 1.0, 0.0)
    p95_unit = float(np.percentile(big, 95))
    lines = ["", f"Sequential early stopping (harness.stats.sequential_check, 95 % overall, "
                 f"looks at {looks}, sigma {sigma}, {trials} trials):", "",
             "| true p95 / limit | mean samples to stop | stopped by 2000 | wrong verdict "
             "| goal: wrong <= 5 % |", "|---|---|---|---|---|"]
    for rel in (0.5, 0.8, 0.9, 0.95, 1.05, 1.1, 1.25, 2.0):
        factor = rel * limit / p95_unit
        used, stopped, wrong = [], 0, 0
        for _ in range(trials):
            x = draw(rng, 2000, sigma, factor, 0.0)
            decision = None
            for n in looks:
                d = sequential_check(x[:n], limit, 95, 0.95, max_looks=len(looks))
                if d.stop:
                    decision = d
                    break
            used.append(decision.count if decision else 2000)
            if decision:
                stopped += 1
                truth = "pass" if rel < 1 else "fail"
                wrong += decision.verdict != truth
        lines.append(f"| {rel:g} | {np.mean(used):.0f} | {stopped / trials:.0%} | "
                     f"{wrong / trials:.1%} | {word(wrong / trials <= 1 - 0.95)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--quick", action="store_true", help="fewer cells (smoke run)")
    ap.add_argument("--part", choices=("single", "multi", "sequential", "all"), default="all")
    ap.add_argument("--sigmas", type=float, nargs="+", help="override the log-normal shapes")
    ap.add_argument("--ns", type=int, nargs="+", help="override the samples-per-run grid")
    ap.add_argument("--run-sds", type=float, nargs="+", help="override the run-to-run sds")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        sigmas, run_sds, ns = (0.10,), (0.0,), (100, 300)
    else:
        sigmas, run_sds, ns = (0.05, 0.10, 0.20), (0.0, 0.01), (50, 100, 200, 300, 500, 800)
    sigmas = tuple(args.sigmas or sigmas)
    ns = tuple(args.ns or ns)
    run_sds = tuple(args.run_sds if args.run_sds is not None else run_sds)
    lines = ["## Regression check: detection vs false alarms (5 % true regression)"]
    if args.part in ("single", "all"):
        lines += regression_table(sigmas, run_sds, ns, args.trials, args.seed)
    if args.part in ("multi", "all"):
        lines += multirun_table(max(50, args.trials // 2), args.seed)
    if args.part in ("sequential", "all"):
        lines += sequential_table(max(100, args.trials // 5), args.seed)
    lines += ["", f"(simulation wall time {time.perf_counter() - t0:.0f} s)"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
