"""Prometheus latency histograms as the judge reads them: whole-request bucket counts, checked,
and merged onto the coarser bounds two revisions share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from controller.analysis_types import LatencyHistogram
from controller.errors import InputError

__all__ = ["aligned", "bucket_counts", "histogram_from_cumulative", "rebin"]

FloatArray = npt.NDArray[np.float64]


def bucket_counts(histogram: LatencyHistogram) -> FloatArray:
    """The counts of ``histogram``, after checking its bounds increase and no count is negative."""
    bounds = np.asarray(histogram.bounds, dtype=np.float64)
    counts = np.asarray(histogram.counts, dtype=np.float64)
    if bounds.ndim != 1 or bounds.size == 0 or bounds.shape != counts.shape:
        raise InputError(
            f"histogram has {len(histogram.bounds)} bounds and {len(histogram.counts)} counts"
        )
    if np.isnan(bounds).any() or np.any(np.diff(bounds) <= 0):
        raise InputError(f"histogram bounds {histogram.bounds} are not strictly increasing")
    if np.any(counts < 0):
        raise InputError(f"histogram counts {histogram.counts} include a negative count")
    return counts


def histogram_from_cumulative(
    bounds: Sequence[float], cumulative_counts: Sequence[float]
) -> LatencyHistogram:
    """Turn Prometheus ``le`` buckets (cumulative, maybe fractional) into a LatencyHistogram.

    ``increase()`` extrapolates each bucket on its own, so cumulative counts may dip; they are
    made monotonic as ``histogram_quantile`` does, then rounded to whole requests.
    """
    cumulative = np.asarray(cumulative_counts, dtype=np.float64)
    if cumulative.shape != (len(bounds),) or not np.all(np.isfinite(cumulative)):
        raise InputError(f"cumulative counts {list(cumulative_counts)} do not fit bounds")
    if np.any(cumulative < 0):
        raise InputError(f"cumulative counts {list(cumulative_counts)} include a negative")
    whole = np.rint(np.maximum.accumulate(cumulative)).astype(np.int64)
    counts = np.diff(whole, prepend=0)
    histogram = LatencyHistogram(tuple(float(b) for b in bounds), tuple(int(x) for x in counts))
    bucket_counts(histogram)
    return histogram


def rebin(histogram: LatencyHistogram, bounds: Sequence[float]) -> LatencyHistogram:
    """Merge buckets into coarser ``bounds``, each one of the histogram's, the last the same."""
    counts = bucket_counts(histogram)
    own = np.asarray(histogram.bounds, dtype=np.float64)
    target = np.asarray(bounds, dtype=np.float64)
    index = np.searchsorted(own, target)
    inside = index < own.size
    if (
        target.size == 0
        or not np.all(inside)
        or not np.array_equal(own[index[inside]], target)
        or target[-1] != own[-1]
    ):
        raise InputError(f"cannot rebin bounds {histogram.bounds} onto {tuple(bounds)}")
    merged = np.diff(np.cumsum(counts)[index], prepend=0.0)
    result = LatencyHistogram(tuple(float(b) for b in target), tuple(int(x) for x in merged))
    bucket_counts(result)  # rejects unsorted target bounds
    return result


def aligned(
    canary: LatencyHistogram, primary: LatencyHistogram
) -> tuple[LatencyHistogram, LatencyHistogram]:
    if canary.bounds == primary.bounds:
        return canary, primary
    common = sorted(set(canary.bounds) & set(primary.bounds))
    return rebin(canary, common), rebin(primary, common)
