"""A registered version under another name, without training it again."""

from __future__ import annotations


def copy_version(tracking_uri: str, source: str, name: str) -> None:
    """Register ``source``'s v1 as v1 of ``name``, with its aliases (MLflow's
    ``copy_model_version`` keeps the run, artifacts and tags, not aliases): a test's own model
    name without a training run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    copied = client.copy_model_version(f"models:/{source}/1", name)
    for alias in client.get_model_version(source, "1").aliases:
        client.set_registered_model_alias(name, alias, copied.version)
