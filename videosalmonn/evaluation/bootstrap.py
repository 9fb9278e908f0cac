"""Percentile-bootstrap confidence intervals, so a reproduction can say whether it differs from the paper.

Two kinds:
* `bootstrap_ci`: for metrics that are a mean of per-sample scores (the accuracies). Resample the scores.
* `bootstrap_corpus_ci`: for corpus-level metrics whose value is not a mean of per-sample values (WER is
  total errors / total reference words; CIDEr-D's IDF comes from the evaluated set). Resample the *samples*
  and recompute the whole metric on each resampled set.

Both draw `n` resamples with numpy's PCG64 generator seeded by `seed`, so the interval is reproducible, and
return the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles (linear interpolation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from videosalmonn.errors import InputError


def bootstrap_ci(
    per_sample_scores: Sequence[float], n: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """(low, high) of the mean of `per_sample_scores` (e.g. 0/1 hits), by resampling the scores."""
    scores = np.asarray(per_sample_scores, dtype=np.float64)
    _check(len(scores), n, confidence)
    idx = _resample_indices(len(scores), n, seed)  # (n, m)
    return _interval(scores[idx].mean(axis=1), confidence)


def bootstrap_corpus_ci(
    n_items: int, statistic: Callable[[np.ndarray], float], n: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """(low, high) of `statistic(indices)` over `n` resampled index sets of size `n_items`.

    `statistic` gets an int array of item indices (with repeats) and recomputes the metric on those items; a
    NaN result (e.g. a resample with no reference words) is left out of the quantiles.
    """
    _check(n_items, n, confidence)
    values = np.array([statistic(idx) for idx in _resample_indices(n_items, n, seed)], dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise InputError("the bootstrap statistic was undefined (NaN) on every resample")
    return _interval(values, confidence)


def _resample_indices(m: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, m, size=(n, m))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _check(m: int, n: int, confidence: float) -> None:
    if m == 0:
        raise InputError("no samples to bootstrap")
    if n < 1:
        raise InputError(f"the number of bootstrap resamples must be positive, got {n}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence}")
