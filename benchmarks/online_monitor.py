"""What the model server's drift monitor costs: per request, and per evaluation of its window.

``python benchmarks/online_monitor.py [--features 20] [--window 1000] [--repeats 5]``

Builds a reference profile of 100,000 rows (16 numeric and 4 categorical features by default,
plus a score), fills a window of the last 1,000 rows of shifted traffic, and times in one run:

- **per request**, what :meth:`DriftMonitor.record` adds to a prediction (Sluice: a queue
  append) against doing work on the request path instead: updating running bin counts from
  the row's values (the issue's alternative), adding the row to the window's ring arrays with
  the window's own code, and adding it then evaluating the window;
- **per window**, :meth:`DriftWindow.evaluate` on the full window with the reference prepared
  at load (Sluice's statistics, Evidently's methods), the same window with PSI on every
  feature against the profile's bins, and the baseline of evaluating from scratch as
  ``sluice drift`` does (:func:`detect_drift_from_profile` on the window's rows);
- what the monitor's thread spends moving 1,000 queued one-row requests into the window.

Each figure is the median of ``--repeats`` runs of many calls. Goals: under 10 µs added to a
request, under 1 ms per window evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from controller.drift import DriftConfig, FeatureDriftConfig, detect_drift_from_profile
from controller.drift.online import DriftWindow
from controller.drift.online_reference import OnlineReference
from controller.local.serving.monitor import DriftMonitor, MonitoredVersion
from controller.quality.data_profile import (
    CategoricalProfile,
    DataProfile,
    NumericProfile,
    build_profile,
)


def frames(features: int, rows: int, *, shift: float, seed: int) -> pd.DataFrame:
    """Numeric features (normal, lognormal, counts) and 4 categorical ones, some shifted."""
    rng = np.random.default_rng(seed)
    numeric = features - 4
    columns: dict[str, object] = {}
    for i in range(numeric):
        moved = shift if i % 3 == 0 else 0.0
        if i % 4 == 3:
            columns[f"num_{i:02}"] = rng.poisson(3 + moved, rows).astype(np.int64)
        elif i % 2:
            columns[f"num_{i:02}"] = rng.lognormal(3 + moved / 4, 1.0, rows)
        else:
            columns[f"num_{i:02}"] = rng.normal(moved, 1.0, rows)
    for i in range(4):
        levels = [f"c{j}" for j in range(4 + 3 * i)]
        weights = np.linspace(1, 2 + shift * (i % 2), len(levels))
        columns[f"cat_{i}"] = rng.choice(levels, rows, p=weights / weights.sum())
    return pd.DataFrame(columns)


def running_counts(
    profile: DataProfile, columns: list[str], row: list[object]
) -> Callable[[], None]:
    """The alternative the issue measured: bin counts updated on the path from a row's values.

    Numeric values find their profile bin in one comparison against a padded edge matrix,
    categories a dict lookup. (Counts only grow: a window would also have to take old rows out.)
    """
    numeric = {n: f for n, f in profile.features.items() if isinstance(f, NumericProfile)}
    categorical = {n: f for n, f in profile.features.items() if isinstance(f, CategoricalProfile)}
    edges = np.full((len(numeric), max(len(f.bin_edges) for f in numeric.values())), np.inf)
    for i, feature in enumerate(numeric.values()):
        edges[i, : len(feature.bin_edges)] = feature.bin_edges
    counts = np.zeros((len(numeric), edges.shape[1] + 1))
    positions = [columns.index(n) for n in numeric]
    lookups = [
        ({k: j for j, k in enumerate(f.frequencies)}, columns.index(n))
        for n, f in categorical.items()
    ]
    category_counts = [np.zeros(len(index) + 1) for index, _ in lookups]
    feature_rows = np.arange(len(numeric))

    def update() -> None:
        values = np.array([row[p] for p in positions], dtype=np.float64)
        counts[feature_rows, (values[:, None] > edges).sum(axis=1)] += 1
        for (index, position), bins in zip(lookups, category_counts, strict=True):
            bins[index.get(str(row[position]), len(index))] += 1

    return update


def per_call(action: Callable[[], object], calls: int, repeats: int) -> float:
    """Median seconds per call over ``repeats`` runs of ``calls`` calls."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            action()
        runs.append((time.perf_counter() - started) / calls)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    reference = frames(args.features, 100_000, shift=0.0, seed=1)
    scores = np.random.default_rng(2).beta(1, 20, len(reference))
    numeric = [c for c in reference.columns if c.startswith("num_")]
    categorical = [c for c in reference.columns if c.startswith("cat_")]
    profile: DataProfile = build_profile(
        reference, numeric=numeric, categorical=categorical, predictions=scores
    )
    current = frames(args.features, args.window, shift=0.5, seed=3)
    current_scores = np.random.default_rng(4).beta(1, 10, args.window)
    prepared = OnlineReference.from_profile(profile)
    psi_config = DriftConfig(
        features={name: FeatureDriftConfig(method="psi") for name in profile.features}
    )
    prepared_psi = OnlineReference.from_profile(profile, psi_config)

    def full_window(ref: OnlineReference) -> DriftWindow:
        window = DriftWindow(ref, args.window)
        window.extend(current, current_scores)
        return window

    window, window_psi = full_window(prepared), full_window(prepared_psi)
    verdict = window.evaluate()
    assert verdict is not None
    print(
        f"{args.features} features x {args.window} rows (reference 100,000 rows); "
        f"{len(verdict.drifted_features)} drift: {', '.join(verdict.drifted_features)}"
    )

    # -- per request ---------------------------------------------------------------------------
    row = current.iloc[[0]]
    output = np.array([[0.9, 0.1]])
    monitor = DriftMonitor(MonitoredVersion("bench", "1", prepared), window_rows=args.window)
    ring = full_window(prepared)

    def on_path_extend() -> None:
        ring.extend(row, output[:, 1])

    def on_path_evaluate() -> None:
        ring.extend(row, output[:, 1])
        ring.evaluate()

    update_counts = running_counts(profile, list(current.columns), current.iloc[0].tolist())
    record = per_call(lambda: monitor.record(row, output), 100_000, args.repeats)
    counts = per_call(update_counts, 20_000, args.repeats)
    extend = per_call(on_path_extend, 2_000, args.repeats)
    evaluate_each = per_call(on_path_evaluate, 200, args.repeats)

    # -- per window ----------------------------------------------------------------------------
    evaluate = per_call(window.evaluate, 500, args.repeats)
    evaluate_psi = per_call(window_psi.evaluate, 500, args.repeats)
    window_frame = current.assign(prediction=current_scores)
    scratch = per_call(lambda: detect_drift_from_profile(profile, window_frame), 20, args.repeats)

    # -- the monitor thread's intake -----------------------------------------------------------
    rows = [current.iloc[[i]] for i in range(args.window)]

    def intake() -> None:
        fresh = DriftMonitor(MonitoredVersion("bench", "1", prepared), window_rows=args.window)
        for part in rows:
            fresh.record(part, output)
        started = time.perf_counter()
        fresh.evaluate_now()
        intake_runs.append(time.perf_counter() - started)

    intake_runs: list[float] = []
    for _ in range(args.repeats):
        intake()

    us, ms = 1e6, 1e3
    print("\nper request (added to a prediction)")
    print(f"  Sluice: record() queues the request        {record * us:9.2f} µs")
    print(f"  on the path: running bin counts of the row {counts * us:9.2f} µs")
    print(f"  on the path: add the row to the window     {extend * us:9.2f} µs")
    print(f"  on the path: add the row and evaluate      {evaluate_each * us:9.2f} µs")
    print(f"\nper window evaluation ({args.features} features + score, {args.window} rows)")
    print(f"  Sluice: evaluate() with prepared reference {evaluate * ms:9.3f} ms")
    print(f"  Sluice: the same, PSI on every feature     {evaluate_psi * ms:9.3f} ms")
    print(
        f"  from scratch: detect_drift_from_profile    {scratch * ms:9.3f} ms"
        f"  ({scratch / evaluate:.0f}x)"
    )
    print("\noff the request path, every interval")
    print(
        f"  {args.window} queued one-row requests into the window + evaluate "
        f"{statistics.median(intake_runs) * ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
