"""Does plane B differ from plane A by more than the noise? (what seed 003 could not say)

Each plane has one value per repetition (e.g. the median latency of a run), measured in
interleaved A/B pairs. Two tests, both from scipy, must agree before the verdict says
"exceeds noise":

- Mann-Whitney U (two-sided): are the two samples drawn from one distribution? With 5 vs 5
  values the smallest possible p is 0.008, so 5 pairs can show a difference at alpha 0.05.
- bootstrap 95% confidence interval (percentile method; the two samples are resampled
  independently) of the difference of medians B - A: it must exclude 0.

The verdict says in words which plane is lower/higher, by how much (median and interval),
and what p was; "within noise" when either test does not separate them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 4999
EXCEEDS = "exceeds noise"
WITHIN = "within noise"


class StatsError(ValueError):
    """Samples the comparison cannot use; the message names the fix."""


def _check(name: str, values: Sequence[float]) -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) < 3:
        raise StatsError(
            f"{name}: {len(vals)} values; a comparison needs at least 3 repetitions per plane "
            f"(the suite runs 5 or more)"
        )
    if not all(math.isfinite(v) for v in vals):
        raise StatsError(f"{name}: values must be finite numbers, got {vals}")
    return vals


def _median_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(b, axis=axis) - np.median(a, axis=axis)


def _bootstrap_ci(
    a: Sequence[float], b: Sequence[float], statistic: Callable[..., np.ndarray], seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of statistic(a, b) (vectorized over resamples)."""
    res = stats.bootstrap(
        (np.asarray(a, float), np.asarray(b, float)),
        statistic,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return float(low), float(high)


def difference_ci(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of median(b) - median(a)."""
    if len(set(a)) == 1 and len(set(b)) == 1:
        d = float(b[0] - a[0])
        return d, d  # no spread at all: the interval is the difference itself
    return _bootstrap_ci(a, b, _median_diff, seed)


def compare(
    a_name: str,
    a: Sequence[float],
    b_name: str,
    b: Sequence[float],
    metric: str,
    unit: str,
    lower_is_better: bool = True,
) -> dict[str, Any]:
    """A/B comparison of one metric; the statement is computed from the data."""
    av, bv = _check(a_name, a), _check(b_name, b)
    ma, mb = statistics.median(av), statistics.median(bv)
    if len(set(av + bv)) == 1:
        p = 1.0  # identical values: nothing to tell apart (scipy warns and returns nan)
    else:
        p = float(stats.mannwhitneyu(av, bv, alternative="two-sided").pvalue)
    low, high = difference_ci(av, bv)
    separated = p < ALPHA and (low > 0 or high < 0)
    verdict = EXCEEDS if separated else WITHIN
    ratio = mb / ma if ma else None
    direction = "higher" if mb > ma else "lower"
    better = (mb < ma) == lower_is_better
    if separated:
        statement = (
            f"{b_name} is {direction} than {a_name}: median {metric} {mb:.4g} vs {ma:.4g} {unit} "
            f"(difference {mb - ma:+.4g} {unit}, {CONFIDENCE:.0%} CI {low:+.4g}..{high:+.4g}; "
            f"Mann-Whitney p = {p:.3g}, n = {len(bv)} vs {len(av)}): the difference exceeds the "
            f"noise ({b_name} {'better' if better else 'worse'})."
        )
    else:
        statement = (
            f"{b_name} and {a_name} cannot be told apart: median {metric} {mb:.4g} vs "
            f"{ma:.4g} {unit} (difference {mb - ma:+.4g} {unit}, {CONFIDENCE:.0%} CI "
            f"{low:+.4g}..{high:+.4g}; Mann-Whitney p = {p:.3g}, n = {len(bv)} vs {len(av)}): "
            f"the difference is within the noise."
        )
    return {
        "a": a_name,
        "b": b_name,
        "metric": metric,
        "unit": unit,
        "n_a": len(av),
        "n_b": len(bv),
        "median_a": ma,
        "median_b": mb,
        "difference": mb - ma,
        "ci_low": low,
        "ci_high": high,
        "confidence": CONFIDENCE,
        "mannwhitney_p": p,
        "alpha": ALPHA,
        "ratio_b_over_a": ratio,
        # over the repetitions: the thesis' box (p25..p75, mean) and whiskers (p5, p95)
        "spread_a": {**spread(av), "min": min(av), "max": max(av), "iqr": _iqr(av)},
        "spread_b": {**spread(bv), "min": min(bv), "max": max(bv), "iqr": _iqr(bv)},
        "verdict": verdict,
        "exceeds_noise": separated,
        "statement": statement,
    }


def _iqr(values: list[float]) -> float:
    q = np.percentile(values, [25, 75])
    return float(q[1] - q[0])


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(b, axis=axis) / np.median(a, axis=axis)


def ratio_ci(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of median(b) / median(a) (e.g. a throughput ratio)."""
    if len(set(a)) == 1 and len(set(b)) == 1:
        r = float(b[0] / a[0])
        return r, r
    return _bootstrap_ci(a, b, _median_ratio, seed)


def spread(values: Sequence[float]) -> dict[str, float]:
    """p5/p25/median/mean/p75/p95 of per-repetition values (the thesis' box and whiskers)."""
    vals = [float(v) for v in values]
    q = np.percentile(vals, [5, 25, 50, 75, 95])
    return {
        "p5": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "mean": statistics.fmean(vals),
        "p75": float(q[3]),
        "p95": float(q[4]),
    }
