"""Register small real model versions in a real MLflow server, fast.

Training the fraud detector takes seconds per version; tests of what happens *after*
registration need a real version with real artifacts, not a good model. This logs a tiny
scikit-learn model the way the training step does (cloudpickle, signature, predict_proba).
"""

from __future__ import annotations

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from models.pinned_requirements import pinned

__all__ = ["register_version"]


def register_version(
    tracking_uri: str,
    name: str,
    *,
    alias: str | None = "challenger",
    metrics: dict[str, float] | None = None,
    input_example: bool = False,
) -> int:
    """Log and register one version of ``name``; point ``alias`` at it; return its number."""
    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.random(50) * 100, "hour": rng.integers(0, 24, 50)})
    labels = (frame["amount"] > 50).astype(int)
    model = LogisticRegression().fit(frame, labels)
    mlflow.set_experiment(name)
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics or {"roc_auc": 0.91, "pr_auc": 0.42})
        mlflow.log_param("data", "tests")
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            signature=infer_signature(frame, model.predict_proba(frame)),
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_proba",
            input_example=frame.head(10) if input_example else None,
            pip_requirements=pinned(),
        )
    client = MlflowClient(tracking_uri)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id
    )
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)
