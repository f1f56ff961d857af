"""What the local router adds to a prediction: p50/p99 direct to a model server vs through it.

``python benchmarks/router_overhead.py [--requests N]``

Starts a real KServe model server (``python -m controller.local.serving``) on a small
scikit-learn pipeline saved as an MLflow model in a temporary directory, puts a
:class:`controller.local.router.Router` in front of it, and sends the same V1 request
alternately straight to the server and through the router over two keep-alive connections,
so both series see the same machine load. Prints both latency distributions and the added
milliseconds (goal: under 1 ms at p50). The router runs in this process, as it does inside
``sluice local up``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from controller.local.router import Router, TrafficTarget
from controller.local.serving.launcher import start_model_server

ROW = [106.75, 10, 300, 5, "grocery", "GB"]
COLUMNS = ["amount", "hour", "card_age_days", "tx_velocity_24h", "merchant_category", "country"]


def save_model(path: Path) -> None:
    """A small fraud-like pipeline, saved as the training step logs it (cloudpickle, proba)."""
    rng = np.random.default_rng(7)
    rows = 2000
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, rows),
            "hour": rng.integers(0, 24, rows),
            "card_age_days": rng.integers(0, 2000, rows),
            "tx_velocity_24h": rng.integers(0, 20, rows),
            "merchant_category": rng.choice(["grocery", "fuel", "travel"], rows),
            "country": rng.choice(["US", "GB", "DE"], rows),
        }
    )
    labels = (frame["amount"] > 60) & (frame["hour"] < 6)
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", COLUMNS[:4]),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), COLUMNS[4:]),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", HistGradientBoostingClassifier())])
    model.fit(frame, labels)
    # Both are deliberate, as in training: integer features without nulls, cloudpickle.
    warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent")
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(frame, model.predict_proba(frame)),
        serialization_format="cloudpickle",
        pyfunc_predict_fn="predict_proba",
    )


def timed_request(connection: http.client.HTTPConnection, body: bytes) -> float:
    """Milliseconds for one prediction, response body read."""
    started = time.perf_counter()
    connection.request(
        "POST", "/v1/models/bench:predict", body, {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"prediction failed with HTTP {response.status}")
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        root = Path(tmp)
        save_model(root / "model")
        started = time.perf_counter()
        server = start_model_server(
            name="bench", storage_uri=(root / "model").as_uri(), log_dir=root / "server", env={}
        )
        print(f"model server ready in {time.perf_counter() - started:.1f} s")
        with server, Router(isvc="bench", seed=0) as router:
            router.set_routes([TrafficTarget("bench-predictor-00001", server.url, 100)])
            direct = http.client.HTTPConnection("127.0.0.1", server.port)
            routed = http.client.HTTPConnection("127.0.0.1", router.port)
            body = json.dumps({"instances": [ROW]}).encode()
            for _ in range(200):  # warm up both paths and their connection pools
                timed_request(direct, body)
                timed_request(routed, body)
            times: dict[str, list[float]] = {"direct": [], "router": []}
            for _ in range(args.requests):
                times["direct"].append(timed_request(direct, body))
                times["router"].append(timed_request(routed, body))
    for path, values in times.items():
        print(
            f"{path:>7}: p50 {percentile(values, 0.5):6.2f} ms   "
            f"p99 {percentile(values, 0.99):6.2f} ms   ({len(values)} requests)"
        )
    added50 = percentile(times["router"], 0.5) - percentile(times["direct"], 0.5)
    added99 = percentile(times["router"], 0.99) - percentile(times["direct"], 0.99)
    paired = statistics.median(r - d for r, d in zip(times["router"], times["direct"], strict=True))
    print(
        f"  added: p50 {added50:+.2f} ms   p99 {added99:+.2f} ms   median paired {paired:+.2f} ms"
    )
    print("goal: under 1 ms added at p50 -", "met" if added50 < 1.0 else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
