"""An InferenceGraph's status as KServe's controller writes it, and the health Argo CD shows."""

from __future__ import annotations

from typing import Any

import jsonschema
from support.graph_samples import ENSEMBLE_SAMPLE, MARKET_REGIME, SWITCH_SAMPLE

from controller.backends.argocd_health import HealthStatus, inferencegraph_health
from controller.local.graph import graph_status, has_predictor_endpoint
from controller.manifests.inference_graph import strict_schema
from controller.schemas import inferencegraph_schema

STATUS_VALIDATOR = jsonschema.Draft7Validator(
    strict_schema(inferencegraph_schema()["properties"]["status"])
)
READY_CONDITIONS = (
    ("ConfigurationsReady", "True"),
    ("Ready", "True"),
    ("RoutesReady", "True"),
    ("Stopped", "False"),
)
BOTH_READY = {"sklearn-iris": True, "xgboost-iris": True}


def health(status: dict[str, Any] | None) -> HealthStatus:
    obj: dict[str, Any] = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph"}
    return inferencegraph_health(obj | ({"status": status} if status is not None else {}))


def graph_with_annotations(annotations: dict[str, str]) -> dict[str, Any]:
    metadata = {**ENSEMBLE_SAMPLE["metadata"], "annotations": annotations}
    return {**ENSEMBLE_SAMPLE, "metadata": metadata}


def test_ready_graph_reports_knatives_conditions_and_its_url() -> None:
    """All services ready: the router's Knative conditions, Stopped False, and the URL."""
    status = graph_status(ENSEMBLE_SAMPLE, BOTH_READY, None, now="t0")
    assert status == {
        "conditions": [
            {"type": t, "status": s, "lastTransitionTime": "t0"}
            for t, s in (
                ("ConfigurationsReady", "True"),
                ("Ready", "True"),
                ("RoutesReady", "True"),
                ("Stopped", "False"),
            )
        ],
        "url": "http://ensemble-model.models-local.example.com",
    }
    assert list(STATUS_VALIDATOR.iter_errors(status)) == []
    assert health(status) == HealthStatus("Healthy", "InferenceGraph is ready.")


def test_new_graph_with_a_service_not_ready_reports_nothing() -> None:
    """KServe stops before writing a status while a service has no endpoint: Progressing."""
    assert graph_status(ENSEMBLE_SAMPLE, {"sklearn-iris": True}, None, now="t0") is None
    not_ready = {"sklearn-iris": True, "xgboost-iris": False}
    assert graph_status(ENSEMBLE_SAMPLE, not_ready, None, now="t0") is None
    assert health(None) == HealthStatus(
        "Progressing", "Waiting for InferenceGraph to report status..."
    )


def test_a_service_going_away_leaves_the_last_status() -> None:
    """Once written, the status stays as it was while a service is missing (KServe requeues)."""
    ready = graph_status(ENSEMBLE_SAMPLE, BOTH_READY, None, now="t0")
    assert graph_status(ENSEMBLE_SAMPLE, {}, ready, now="t1") == ready


def test_transition_times_are_kept_while_conditions_hold() -> None:
    """A second reconcile with nothing changed keeps the first time stamps."""
    first = graph_status(ENSEMBLE_SAMPLE, BOTH_READY, None, now="t0")
    again = graph_status(ENSEMBLE_SAMPLE, BOTH_READY, first, now="t1")
    assert again == first


def test_graph_of_urls_only_needs_no_service() -> None:
    """Only ``serviceName`` steps are resolved: a graph of URLs is ready at once."""
    status = graph_status(SWITCH_SAMPLE, {}, None, now="t0", url="http://127.0.0.1:9000")
    assert status is not None
    assert status["url"] == "http://127.0.0.1:9000"


def test_services_of_nested_nodes_are_all_resolved() -> None:
    """Every node's services count, not just the root's."""
    members = {"regime-classifier": True, "calm-model": True, "tail-risk": True, "momentum": True}
    assert graph_status(MARKET_REGIME, members, None, now="t0") is None
    assert graph_status(MARKET_REGIME, members | {"blender": True}, None, now="t0") is not None


def test_raw_deployment_reports_ready_and_its_url() -> None:
    """RawDeployment: Ready from the router's Deployment, and the raw host form."""
    status = graph_status(
        ENSEMBLE_SAMPLE, BOTH_READY, None, now="t0", deployment_mode="RawDeployment"
    )
    assert status is not None
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Stopped"]
    assert status["url"] == "http://ensemble-model-models-local.example.com"


def test_stopped_graph_is_suspended() -> None:
    """The stop annotation: Stopped True, Ready False (Stopped), no URL; Argo CD: Suspended."""
    stopped = graph_with_annotations({"serving.kserve.io/stop": "true"})
    status = graph_status(stopped, {}, None, now="t0")
    assert status == {
        "conditions": [
            {"type": "Stopped", "status": "True", "lastTransitionTime": "t0"},
            {"type": "Ready", "status": "False", "reason": "Stopped", "lastTransitionTime": "t0"},
        ]
    }
    assert health(status) == HealthStatus("Suspended", "InferenceGraph is Stopped")


def test_ready_false_is_degraded_and_unknown_is_progressing() -> None:
    """Argo CD's health follows Ready: False is Degraded, Unknown Progressing, with the why."""
    ready = {"type": "Ready", "status": "False", "reason": "RevisionFailed"}
    failed = {"conditions": [ready | {"message": "router crashed"}]}
    assert health(failed) == HealthStatus(
        "Degraded", "Ready | False | RevisionFailed | router crashed"
    )
    starting = {"conditions": [{"type": "Ready", "status": "Unknown"}]}
    assert health(starting) == HealthStatus("Progressing", "Ready | Unknown")


def test_predictor_endpoint_is_the_address_url() -> None:
    """A service is usable by a graph once its status has an address URL."""
    assert has_predictor_endpoint({"status": {"address": {"url": "http://x.ns.svc"}}})
    assert not has_predictor_endpoint({"status": {"conditions": []}})
    assert not has_predictor_endpoint({})
