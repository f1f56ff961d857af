"""Sluice's drift detector against Evidently's DataDriftPreset: time, peak memory, agreement.

Sluice reproduces the verdicts of Evidently's default drift preset; this measures what that
costs each way on the same data: a reference and a current frame of N rows with 20 numeric
and 5 categorical features, some of them shifted. Three engines run on identical frames:

- ``evidently``: ``Report([DataDriftPreset()], include_tests=True)`` (the tests carry
  Evidently's own per-column verdicts and cost nothing extra),
- ``sluice``: :func:`controller.drift.detect_drift`,
- ``scipy``: the same statistics called naively from scipy per column, for scale.

Every run is a fresh subprocess that builds the frames, then resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), so "peak above data" is what the engine itself allocates; "peak RSS"
is the whole process (interpreter, imports and data included). Wall time excludes imports and
data generation. Times are the median of ``--repeats`` runs. Run from the repository root::

    python benchmarks/drift_vs_evidently.py                 # 100,000 and 1,000,000 rows
    python benchmarks/drift_vs_evidently.py --rows 100000 --repeats 1

Evidently is a benchmark-only dependency (``pip install -e '.[bench]'``); without it the script
says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ENGINES = ("evidently", "sluice", "scipy")
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]


def _categories(count: int, prefix: str) -> np.ndarray:
    return np.array([f"{prefix}_{i}" for i in range(count)], dtype=object)


def make_frames(rows: int, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames; the same arguments give the same frames."""
    frames = []
    for side in (0, 1):
        rng = np.random.default_rng([seed, side])
        moved = float(side)  # 0 in the reference, 1 in the current
        data: dict[str, Any] = {
            "num_00": rng.normal(0.5 * moved, 1.0, rows),  # mean +0.5 sd: drift
            "num_01": rng.normal(0.0, 1.0 + 0.5 * moved, rows),  # spread x1.5: drift
            "num_02": rng.normal(0.02 * moved, 1.0, rows),  # tiny shift: KS-significant only
            "num_03": rng.lognormal(3.0 + 0.3 * moved, 0.8, rows),  # amounts inflate: drift
            "num_04": rng.exponential(2.0 + 0.02 * moved, rows),
            "num_05": rng.normal(0.15 * moved, 1.0, rows),  # +0.15 sd: drift
            "num_06": rng.normal(0.08 * moved, 1.0, rows),  # +0.08 sd: below 0.1
        }
        for i in range(7, 14):
            data[f"num_{i:02d}"] = rng.gamma(2.0 + i / 10, 1.5, rows)
        data["num_14"] = rng.poisson(3.0 + 0.6 * moved, rows).astype(np.float64)  # drift
        data["num_15"] = rng.poisson(5.0, rows).astype(np.float64)
        low = [0.5, 0.3, 0.2] if side == 0 else [0.3, 0.3, 0.4]
        data["num_16"] = rng.choice(3, rows, p=low).astype(np.float64)  # 3 values, drift
        data["num_17"] = rng.choice(3, rows, p=[0.5, 0.3, 0.2]).astype(np.float64)
        data["num_18"] = rng.integers(0, 2, rows).astype(np.float64)  # binary
        with_gaps = rng.normal(10.0, 3.0, rows)
        with_gaps[rng.random(rows) < 0.05] = np.nan  # 5% missing
        data["num_19"] = with_gaps
        weights = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
        moved_weights = weights[::-1] if side else weights
        data["cat_0"] = _categories(8, "a")[rng.choice(8, rows, p=moved_weights)]  # drift
        data["cat_1"] = _categories(8, "b")[rng.choice(8, rows, p=weights)]
        data["cat_2"] = _categories(50, "c")[rng.integers(0, 50, rows)]
        data["cat_3"] = np.array(["yes", "no"], dtype=object)[rng.integers(0, 2, rows)]
        # A category only the current data has, 3% of rows: JS just above 0.1, a close call.
        extra = 1 if side else 0
        pool = _categories(5 + extra, "e")
        p = np.array([0.3, 0.25, 0.2, 0.15, 0.1] + [0.0] * extra)
        if extra:
            p = p * 0.97
            p[-1] = 0.03
        data["cat_4"] = pool[rng.choice(pool.size, rows, p=p)]
        frames.append(pd.DataFrame(data))
    return frames[0], frames[1]


def _status(key: str) -> int:
    """A /proc/self/status field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> Callable[[], dict[str, Any]]:
    import evidently
    from evidently.presets import DataDriftPreset

    definition = evidently.DataDefinition(
        numerical_columns=NUMERIC, categorical_columns=CATEGORICAL
    )

    def run() -> dict[str, Any]:
        snapshot = evidently.Report([DataDriftPreset()], include_tests=True).run(
            evidently.Dataset.from_pandas(current, data_definition=definition),
            evidently.Dataset.from_pandas(reference, data_definition=definition),
        )
        report = snapshot.dict()
        features: dict[str, dict[str, Any]] = {}
        for metric in report["metrics"]:
            if "column" in metric["config"]:
                column = metric["config"]["column"]
                features[column] = {"value": metric["value"], "method": metric["config"]["method"]}
        for test in report["tests"]:
            params = test["metric_config"]["params"]
            if "column" in params:
                features[params["column"]]["drifted"] = test["status"] == "FAIL"
            else:
                dataset_drifted = test["status"] == "FAIL"
        return {"features": features, "dataset_drifted": dataset_drifted}

    return run


def _run_sluice(reference: pd.DataFrame, current: pd.DataFrame) -> Callable[[], dict[str, Any]]:
    from controller.drift import detect_drift

    def run() -> dict[str, Any]:
        result = detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)
        features = {
            f.feature: {"value": f.value, "method": f.statistic, "drifted": f.drifted}
            for f in result.features
        }
        return {"features": features, "dataset_drifted": result.drifted}

    return run


def _run_scipy(reference: pd.DataFrame, current: pd.DataFrame) -> Callable[[], dict[str, Any]]:
    """Per column, the textbook scipy calls for Evidently's large-reference defaults."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    def js(ref: pd.Series, cur: pd.Series) -> float:
        table = pd.concat([ref.value_counts(), cur.value_counts()], axis=1).fillna(0.0)
        p, q = table.iloc[:, 0].to_numpy(), table.iloc[:, 1].to_numpy()
        return float(jensenshannon(p / p.sum(), q / q.sum()))

    def run() -> dict[str, Any]:
        features: dict[str, dict[str, Any]] = {}
        for name in NUMERIC:
            ref, cur = reference[name].dropna(), current[name].dropna()
            if pd.concat([ref, cur]).nunique() <= 5:
                value, method = js(ref, cur), "Jensen-Shannon distance"
            else:
                norm = max(float(np.std(ref)), 0.001)
                value, method = (
                    wasserstein_distance(ref, cur) / norm,
                    "Wasserstein distance (normed)",
                )
            features[name] = {"value": value, "method": method, "drifted": value >= 0.1}
        for name in CATEGORICAL:
            value = js(reference[name].dropna(), current[name].dropna())
            features[name] = {"value": value, "method": "Jensen-Shannon distance"}
            features[name]["drifted"] = value >= 0.1
        share = sum(f["drifted"] for f in features.values()) / len(features)
        return {"features": features, "dataset_drifted": share >= 0.5}

    return run


def worker(engine: str, rows: int) -> None:
    """One measured run in this process; prints a JSON line."""
    factories = {"evidently": _run_evidently, "sluice": _run_sluice, "scipy": _run_scipy}
    reference, current = make_frames(rows)
    run = factories[engine](reference, current)  # imports happen here, before the mark
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    baseline = _status("VmRSS")
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    import resource

    lifetime_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    numbers = {"seconds": seconds, "baseline": baseline, "peak": peak, "lifetime": lifetime_peak}
    print(json.dumps({**numbers, **result}, default=lambda value: value.item()))


def measure(engine: str, rows: int, repeats: int) -> dict[str, Any]:
    """Median time and memory of ``repeats`` runs, each in a fresh subprocess."""
    runs = []
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    for _ in range(repeats):
        command = [sys.executable, __file__, "--worker", engine, "--rows", str(rows)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"{engine} run at {rows} rows failed:\n{done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    last = runs[-1]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "all_seconds": [r["seconds"] for r in runs],
        "peak_mb": statistics.median(r["peak"] for r in runs) / 2**20,
        "above_data_mb": statistics.median(r["peak"] - r["baseline"] for r in runs) / 2**20,
        "features": last["features"],
        "dataset_drifted": last["dataset_drifted"],
    }


def report(rows: int, results: dict[str, dict[str, Any]]) -> None:
    """Print the measurements, the ratios to Sluice and the per-feature agreement."""
    print(f"\n== {rows:,} rows per frame, 20 numeric + 5 categorical features")
    print(
        f"{'engine':<10} {'median s':>9} {'runs s':>24} {'peak RSS MB':>12} {'above data MB':>14}"
    )
    for engine, r in results.items():
        runs = ", ".join(f"{s:.2f}" for s in r["all_seconds"])
        print(
            f"{engine:<10} {r['seconds']:>9.2f} {runs:>24} {r['peak_mb']:>12.0f} "
            f"{r['above_data_mb']:>14.0f}"
        )
    sluice = results.get("sluice")
    if sluice is None:
        return
    for engine, r in results.items():
        if engine != "sluice":
            print(
                f"{engine} / sluice: time x{r['seconds'] / sluice['seconds']:.1f}, peak RSS "
                f"x{r['peak_mb'] / sluice['peak_mb']:.2f}, above data "
                f"x{r['above_data_mb'] / max(sluice['above_data_mb'], 1.0):.1f}"
            )
    evidently = results.get("evidently")
    if evidently is None:
        return
    print(f"{'feature':<8} {'evidently method':<31} {'evidently':>12} {'sluice':>12} agree")
    agree = 0
    for name in NUMERIC + CATEGORICAL:
        ev, sl = evidently["features"][name], sluice["features"][name]
        same = ev["drifted"] == sl["drifted"] and ev["method"] == sl["method"]
        agree += same
        print(
            f"{name:<8} {ev['method']:<31} {ev['value']:>12.6g} {sl['value']:>12.6g} "
            f"{'yes' if same else 'NO'}{' (drift)' if sl['drifted'] else ''}"
        )
    gap = max(
        abs(evidently["features"][n]["value"] - sluice["features"][n]["value"])
        for n in NUMERIC + CATEGORICAL
    )
    datasets = evidently["dataset_drifted"] == sluice["dataset_drifted"]
    print(
        f"agreement: {agree}/{len(NUMERIC + CATEGORICAL)} features (method and verdict), "
        f"largest value difference {gap:.1e}, dataset verdict {'agrees' if datasets else 'DIFFERS'}"
    )


def main() -> None:
    """Parse arguments, then run the workers or act as one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rows[0])
        return
    if "evidently" in args.engines and importlib.util.find_spec("evidently") is None:
        print(
            "evidently is not installed: pip install -e '.[bench]' (evidently==0.7.23), "
            "or pass --engines sluice scipy",
            file=sys.stderr,
        )
        sys.exit(2)
    for rows in args.rows:
        report(rows, {engine: measure(engine, rows, args.repeats) for engine in args.engines})


if __name__ == "__main__":
    main()
