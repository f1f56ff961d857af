"""The online monitor's arithmetic: a window of recent rows and its drift, on whole arrays.

A model server keeps its last ``capacity`` rows (inputs and the model's score) in a
:class:`DriftWindow` and asks it for a verdict every few seconds, off the request path. The
window stores each feature the way its statistic reads it: numbers for the sample methods, bin
codes for the histogram methods (see :mod:`controller.drift.online_reference`), in two
preallocated ring arrays, so adding rows is a copy and evaluating reads them in place. An
evaluation makes one pass over whole arrays and loops only over features:

- **normed Wasserstein**, for every feature at once: sort the window (one ``np.sort`` of a
  features x rows array), then integrate ``|R^-1(u) - C^-1(u)|`` over a grid of ``u`` that
  depends only on the reference sample's size and the window's, computed once per pair of
  sizes. For empirical distributions that equals the CDF form scipy uses, to rounding.
- **histograms**: one ``np.bincount`` over the codes of every histogram feature (offset per
  feature), then scipy's Jensen-Shannon for all of them in one call; chi-square, z-test and
  PSI call :mod:`controller.drift.statistics` per feature.
- **KS** (references of at most 1,000 rows): :func:`~controller.drift.statistics.ks_2samp` per
  feature, scipy's exact test.

Values are those of :func:`~controller.drift.detect_drift_from_profile` on the same rows (the
tests check it to 1e-9); the verdict rules are the detector's :func:`~controller.drift.is_drift`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from controller.drift.detector import is_drift
from controller.drift.features import DriftMethod
from controller.drift.online_reference import (
    HistogramFeature,
    OnlineReference,
    SampleFeature,
    column_numbers,
)
from controller.drift.statistics import (
    WASSERSTEIN_MIN_STD,
    chi_square,
    ks_2samp,
    psi,
    wasserstein_normed,
    z_test_proportions,
)

__all__ = ["DriftWindow", "FeatureScore", "WindowDrift"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_MAX_GRIDS = 8  # quantile grids kept: the window's size changes only while it fills


@dataclass(frozen=True)
class FeatureScore:
    """One feature's statistic over the window and its verdict."""

    name: str
    method: DriftMethod
    value: float
    threshold: float
    drifted: bool
    rows: int


@dataclass(frozen=True)
class WindowDrift:
    """The window's verdict: every scored feature, the predictions, the dataset's share."""

    rows: int
    features: tuple[FeatureScore, ...]
    prediction: FeatureScore | None
    drift_share: float

    @property
    def drifted_share(self) -> float:
        """Share of the scored input features that drift (0 with none scored)."""
        if not self.features:
            return 0.0
        return sum(score.drifted for score in self.features) / len(self.features)

    @property
    def drifted(self) -> bool:
        """Whether the dataset drifts: at least ``drift_share`` of its features do."""
        return bool(self.features) and self.drifted_share >= self.drift_share

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Names of the drifted input features, in profile order."""
        return tuple(score.name for score in self.features if score.drifted)


@dataclass(frozen=True)
class _WassersteinGroup:
    """Wasserstein features whose reference samples have one size, stacked for one pass."""

    rows: IntArray  # positions in the window's value array
    references: FloatArray  # features x sample size, each row sorted
    norms: FloatArray  # max(std, Evidently's floor) per feature


class DriftWindow:
    """The last ``capacity`` rows of inputs and predictions, and their drift on demand.

    Not thread-safe: one thread (the monitor's) adds rows and evaluates.
    """

    def __init__(self, reference: OnlineReference, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("a drift window holds at least one row")
        self.reference = reference
        self.capacity = capacity
        watched = list(reference.features)
        if reference.prediction is not None:
            watched.append(reference.prediction)
        self._watched = watched
        self._samples = [f for f in watched if isinstance(f, SampleFeature)]
        self._histograms = [f for f in watched if isinstance(f, HistogramFeature)]
        self._values = np.full((len(self._samples), capacity), np.nan)
        self._codes = np.full((len(self._histograms), capacity), -1, dtype=np.int64)
        self._next = 0
        self._rows = 0
        self._groups = self._wasserstein_groups()
        self._grids: dict[tuple[int, int], tuple[IntArray, IntArray, FloatArray]] = {}
        width = max((f.bins for f in self._histograms), default=1)
        self._width = width
        self._offsets = np.arange(len(self._histograms), dtype=np.int64) * width
        padded = np.zeros((len(self._histograms), width))
        for i, feature in enumerate(self._histograms):
            padded[i, : feature.bins] = feature.reference_counts
        self._js = np.flatnonzero([f.method == "jensenshannon" for f in self._histograms])
        js_reference = padded[self._js]
        self._js_reference = js_reference / js_reference.sum(axis=1, keepdims=True)

    @property
    def rows(self) -> int:
        """Rows held (at most ``capacity``)."""
        return self._rows

    def extend(self, frame: pd.DataFrame, predictions: npt.ArrayLike | None = None) -> None:
        """Add ``frame``'s rows and the model's score for each (NaN where there is none).

        A column the frame lacks counts as missing values, which are left out of its statistic.
        """
        count = len(frame)
        if count == 0:
            return
        scores = np.full(count, np.nan)
        if predictions is not None:
            given = np.asarray(predictions, dtype=np.float64).ravel()
            if given.size == count:
                scores = given
        prediction = self.reference.prediction
        values = np.full((len(self._samples), count), np.nan)
        for i, sample in enumerate(self._samples):
            if sample is prediction:
                values[i] = scores
            elif sample.name in frame.columns:
                values[i] = column_numbers(frame[sample.name])
        codes = np.full((len(self._histograms), count), -1, dtype=np.int64)
        for i, hist in enumerate(self._histograms):
            if hist is prediction:
                codes[i] = hist.codes(pd.Series(scores))
            elif hist.name in frame.columns:
                codes[i] = hist.codes(frame[hist.name])
        self._write(values, codes)

    def _write(self, values: FloatArray, codes: IntArray) -> None:
        count = values.shape[1]
        if count >= self.capacity:  # only the newest rows fit
            self._values[:] = values[:, -self.capacity :]
            self._codes[:] = codes[:, -self.capacity :]
            self._next, self._rows = 0, self.capacity
            return
        first = min(count, self.capacity - self._next)
        end = self._next + first
        self._values[:, self._next : end] = values[:, :first]
        self._codes[:, self._next : end] = codes[:, :first]
        rest = count - first  # wraps around to the start
        self._values[:, :rest] = values[:, first:]
        self._codes[:, :rest] = codes[:, first:]
        self._next = (self._next + count) % self.capacity
        self._rows = min(self.capacity, self._rows + count)

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self) -> WindowDrift | None:
        """Every feature's statistic over the window; None while the window is empty."""
        if self._rows == 0:
            return None
        values = self._values[:, : self._rows]
        codes = self._codes[:, : self._rows]
        scored: dict[int, FeatureScore] = {}
        sample_scores = self._sample_scores(values)
        for sample, score in zip(self._samples, sample_scores, strict=True):
            if score is not None:
                scored[id(sample)] = score
        for hist, score in zip(self._histograms, self._histogram_scores(codes), strict=True):
            if score is not None:
                scored[id(hist)] = score
        prediction = self.reference.prediction
        return WindowDrift(
            rows=self._rows,
            features=tuple(scored[id(f)] for f in self.reference.features if id(f) in scored),
            prediction=scored.get(id(prediction)) if prediction is not None else None,
            drift_share=self.reference.drift_share,
        )

    def _wasserstein_groups(self) -> list[_WassersteinGroup]:
        by_size: dict[int, list[int]] = {}
        for i, feature in enumerate(self._samples):
            if feature.method == "wasserstein":
                by_size.setdefault(feature.sorted_sample.size, []).append(i)
        return [
            _WassersteinGroup(
                rows=np.asarray(rows, dtype=np.int64),
                references=np.stack([self._samples[i].sorted_sample for i in rows]),
                norms=np.asarray([max(self._samples[i].std, WASSERSTEIN_MIN_STD) for i in rows]),
            )
            for rows in by_size.values()
        ]

    def _grid(self, n: int, m: int) -> tuple[IntArray, IntArray, FloatArray]:
        """Where the quantile functions of an n- and an m-point sample step, in units of 1/nm.

        Between consecutive steps ``t_{k-1} < u <= t_k`` the first sample's quantile is its
        value number ``ceil(t_k / m)`` and the second's ``ceil(t_k / n)``; integers keep the
        steps exact.
        """
        grid = self._grids.get((n, m))
        if grid is None:
            if len(self._grids) >= _MAX_GRIDS:
                self._grids.clear()
            steps = np.union1d(np.arange(1, n + 1) * m, np.arange(1, m + 1) * n)
            widths = np.diff(steps, prepend=0) / (n * m)
            grid = ((steps + m - 1) // m - 1, (steps + n - 1) // n - 1, widths)
            self._grids[n, m] = grid
        return grid

    def _sample_scores(self, values: FloatArray) -> list[FeatureScore | None]:
        scores: list[FeatureScore | None] = [None] * len(self._samples)
        finite = np.isfinite(values)
        complete = np.all(finite, axis=1, keepdims=False).astype(bool)
        for group in self._groups:
            whole = complete[group.rows]
            if whole.any():
                rows = group.rows[whole]
                current = np.sort(values[rows], axis=1)
                first, second, widths = self._grid(group.references.shape[1], current.shape[1])
                gaps = np.abs(group.references[whole][:, first] - current[:, second])
                distances = (gaps @ widths) / group.norms[whole]
                for i, distance in zip(rows, distances, strict=True):
                    scores[i] = self._score(self._samples[i], float(distance), current.shape[1])
        for i, feature in enumerate(self._samples):
            if scores[i] is not None:
                continue
            present = values[i][finite[i]]
            if present.size == 0:
                continue
            if feature.method == "ks":
                value = ks_2samp(feature.sorted_sample, np.sort(present), assume_sorted=True)[1]
            else:  # Wasserstein with missing values in the window: this feature alone
                value = wasserstein_normed(
                    feature.sorted_sample,
                    np.sort(present),
                    assume_sorted=True,
                    reference_std=feature.std,
                )
            scores[i] = self._score(feature, value, present.size)
        return scores

    def _histogram_scores(self, codes: IntArray) -> list[FeatureScore | None]:
        count = len(self._histograms)
        if count == 0:
            return []
        valid = codes >= 0
        flat = (codes + self._offsets[:, None])[valid]
        counts = np.bincount(flat, minlength=count * self._width).reshape(count, self._width)
        current = counts.astype(np.float64)
        totals = current.sum(axis=1)
        values: dict[int, float] = {}
        if self._js.size:
            # A feature with no rows in the window is NaN here (0/0) and skipped below.
            from scipy.spatial import distance  # on use: ~0.4 s to import

            with np.errstate(divide="ignore", invalid="ignore"):
                js = distance.jensenshannon(self._js_reference, current[self._js], axis=1)
            values.update(zip(self._js.tolist(), js.tolist(), strict=True))
        scores: list[FeatureScore | None] = []
        for i, feature in enumerate(self._histograms):
            if totals[i] == 0:
                scores.append(None)
                continue
            value = values[i] if i in values else _histogram_value(feature, current[i])
            scores.append(self._score(feature, value, int(totals[i])))
        return scores

    @staticmethod
    def _score(feature: SampleFeature | HistogramFeature, value: float, rows: int) -> FeatureScore:
        return FeatureScore(
            name=feature.name,
            method=feature.method,
            value=float(value),
            threshold=feature.threshold,
            drifted=is_drift(feature.method, float(value), feature.threshold),
            rows=rows,
        )


def _histogram_value(feature: HistogramFeature, counts: FloatArray) -> float:
    """Chi-square, z-test or PSI over the reference's bins, and *other* when the window has it."""
    known = feature.bins - 1
    used = known + 1 if counts[known] > 0 else known
    reference = feature.reference_counts[:used]
    current = counts[:used]
    if feature.method == "chisquare":
        return chi_square(reference, current).pvalue
    if feature.method == "z":
        ref_total, cur_total = float(reference.sum()), float(current.sum())
        return z_test_proportions(
            ref_total - reference[0], ref_total, cur_total - current[0], cur_total
        ).pvalue
    return psi(reference, current)
