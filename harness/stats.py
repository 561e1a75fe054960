"""Summary statistics of latency samples, with confidence intervals.

Percentiles of a few hundred noisy samples move between runs; a budget verdict
must know by how much, so every percentile comes with a bootstrap interval.
The resampling is seeded: the same samples always give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def bootstrap_ci(samples: np.ndarray, stat, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of stat (a function of a 2-D array along axis 1)."""
    rng = np.random.default_rng(seed)
    n = samples.size
    idx = rng.integers(0, n, size=(resamples, n))
    values = stat(samples[idx])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(samples_ms: Sequence[float], confidence: float = 0.95, seed: int = 0) -> dict:
    """p50/p90/p95/p99, mean, std, min, max and a CI for each percentile and the mean.

    Field names carry their unit (ms) so a record read without its schema
    still says what it holds.
    """
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    out: dict = {"count": int(x.size), "confidence": confidence}
    # One resample matrix serves every statistic: the intervals come from the
    # same bootstrap world and the cost is paid once.
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, x.size, size=(1000, x.size))]
    boot.sort(axis=1)
    alpha = (1.0 - confidence) / 2.0
    qs = np.percentile(boot, PERCENTILES, axis=1)  # shape (len(PERCENTILES), resamples)
    for i, p in enumerate(PERCENTILES):
        out[f"p{p}_ms"] = float(np.percentile(x, p))
        lo, hi = np.quantile(qs[i], [alpha, 1.0 - alpha])
        out[f"p{p}_ci_ms"] = [float(lo), float(hi)]
    out["mean_ms"] = float(x.mean())
    lo, hi = np.quantile(boot.mean(axis=1), [alpha, 1.0 - alpha])
    out["mean_ci_ms"] = [float(lo), float(hi)]
    out["std_ms"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
    out["min_ms"] = float(x.min())
    out["max_ms"] = float(x.max())
    out["cv"] = float(out["std_ms"] / out["mean_ms"]) if out["mean_ms"] > 0 else 0.0
    return out
