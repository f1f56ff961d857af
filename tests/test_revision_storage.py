"""Which storageUri each revision of a cluster's InferenceService runs, read from its spec
(:func:`controller.backends.target_observation.revision_storage`, what ``sluice lineage``
checks against the pin on a cluster)."""

from __future__ import annotations

from typing import Any

from controller.backends.target_observation import revision_storage

V1 = "s3://models/fraud/1"
V2 = "s3://models/fraud/2"


def _serverless(latest: str | None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"traffic": []}
    if latest:
        predictor["latestCreatedRevision"] = latest
    return {
        "metadata": {"name": "fraud", "namespace": "models"},
        "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": V2}}},
        "status": {"components": {"predictor": predictor}},
    }


def test_serverless_latest_revision_runs_the_spec() -> None:
    """The newest revision runs the spec's storageUri; an older one's is not in the object."""
    assert revision_storage(_serverless("fraud-predictor-00002")) == {"fraud-predictor-00002": V2}


def test_serverless_without_a_revision_yet_says_nothing() -> None:
    assert revision_storage(_serverless(None)) == {}


def test_raw_deployment_primary_and_canary_each_run_their_own() -> None:
    """RawDeployment: spec.predictor's Deployment runs its storageUri, the canary's its own."""
    isvc = {
        "metadata": {
            "name": "fraud",
            "namespace": "models",
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {
            "predictor": {"model": {"storageUri": V1}},
            "canary": [
                {"trafficPercent": 10, "predictor": {"name": "v2", "model": {"storageUri": V2}}}
            ],
        },
        "status": {
            "deploymentMode": "RawDeployment",
            "conditions": [{"type": "PredictorReady", "status": "True"}],
            "canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 10}],
        },
    }
    assert revision_storage(isvc) == {"fraud-predictor": V1, "fraud-v2-predictor": V2}
