"""Argo CD's own InferenceService health check, run by Sluice on Argo CD's cases and on ours."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from upstream.sources import UPSTREAM

from controller.backends.argocd_health import (
    HealthStatus,
    LuaHealthCheck,
    inferencegraph_health,
    inferenceservice_health,
    resource_health,
)
from controller.local.kserve_status import (
    PredictorSpec,
    PreviousStatus,
    Revision,
    RevisionState,
    reconcile_status,
)

#: Argo CD's check and its test data, vendored (tests/upstream/SOURCES.md).
ARGO_CD = UPSTREAM / "argo-cd/resource_customizations/serving.kserve.io/InferenceService"
HEADER_LINES = 7  # Sluice's provenance comment above the verbatim script


def argo_cases() -> list[Any]:
    tests = yaml.safe_load((ARGO_CD / "health_test.yaml").read_text(encoding="utf-8"))["tests"]
    return [pytest.param(t, id=Path(t["inputPath"]).stem) for t in tests]


def test_argo_cd_test_data_cover_every_file() -> None:
    """Argo CD's health_test.yaml has an expectation for each of its test data files."""
    listed = {Path(case.values[0]["inputPath"]).name for case in argo_cases()}
    assert listed == {path.name for path in (ARGO_CD / "testdata").glob("*.yaml")}


@pytest.mark.parametrize("case", argo_cases())
def test_health_matches_argo_cd_expectation(case: dict[str, Any]) -> None:
    """Each Argo CD test resource gets exactly the status and message Argo CD expects."""
    obj = yaml.safe_load((ARGO_CD / case["inputPath"]).read_text(encoding="utf-8"))
    expected = case["healthStatus"]
    assert inferenceservice_health(obj) == HealthStatus(expected["status"], expected["message"])


def test_vendored_script_is_argo_cds() -> None:
    """The packaged health.lua is Argo CD's, unchanged below its provenance header."""
    packaged = (
        resources.files("controller.backends").joinpath("argocd_health.lua").read_text("utf-8")
    )
    upstream = (ARGO_CD / "health.lua").read_text(encoding="utf-8")
    assert packaged.splitlines(keepends=True)[HEADER_LINES:] == upstream.splitlines(keepends=True)


def test_script_cannot_reach_files_or_processes() -> None:
    """The Lua sandbox has no io or os library, as Argo CD's has none."""
    check = LuaHealthCheck(
        'local health_status = {}\nhealth_status.status = type(io) .. "," .. type(os)\n'
        'health_status.message = ""\nreturn health_status'
    )
    assert check({}) == HealthStatus("nil,nil", "")


def test_object_without_status_is_progressing() -> None:
    """An InferenceService that reports nothing yet is Progressing."""
    assert inferenceservice_health({"metadata": {"name": "fraud"}}) == HealthStatus(
        "Progressing", "Waiting for InferenceService to report status..."
    )


def test_resource_health_picks_the_check_by_kind() -> None:
    """InferenceService and InferenceGraph each get their own check; other kinds get none."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    graph = {"kind": "InferenceGraph", "status": ready}
    service = {"kind": "InferenceService", "status": ready}
    assert resource_health(graph) == inferencegraph_health(graph)
    assert resource_health(graph) == HealthStatus("Healthy", "InferenceGraph is ready.")
    assert resource_health(service) == inferenceservice_health(service)
    assert resource_health({"kind": "ConfigMap"}) is None


def test_inferencegraph_check_reads_ready_not_other_conditions() -> None:
    """A graph whose Ready is True is Healthy even with another condition False (its health
    follows Ready alone, as KServe's readiness does)."""
    status = {
        "conditions": [
            {"type": "RoutesReady", "status": "False"},
            {"type": "Ready", "status": "True"},
        ]
    }
    assert inferencegraph_health({"status": status}).status == "Healthy"


# -- statuses produced by the local target -------------------------------------------------------

R1, R2 = "fraud-predictor-00001", "fraud-predictor-00002"
READY, LOADING, FAILED = RevisionState.READY, RevisionState.LOADING, RevisionState.FAILED


def isvc(revisions: list[Revision], percent: int | None = None) -> dict[str, Any]:
    """The InferenceService after R1 was rolled out and then ``revisions`` reconciled."""
    previous = reconcile_status(
        "fraud", PredictorSpec(), [Revision(R1, READY)], PreviousStatus(), now="t0"
    )
    status = reconcile_status(
        "fraud",
        PredictorSpec(percent),
        revisions,
        PreviousStatus.from_dict(previous.status),
        now="t1",
    ).status
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "status": status}


def test_served_revision_is_healthy() -> None:
    """One revision serving everything is Healthy."""
    assert inferenceservice_health(isvc([Revision(R1, READY)])) == HealthStatus(
        "Healthy", "InferenceService is healthy."
    )


def test_ready_canary_is_healthy() -> None:
    """A ready canary taking 10 % is Healthy."""
    health = inferenceservice_health(isvc([Revision(R1, READY), Revision(R2, READY)], 10))
    assert health.status == "Healthy"


def test_loading_canary_is_progressing() -> None:
    """A canary still loading its model is Progressing."""
    health = inferenceservice_health(isvc([Revision(R1, READY), Revision(R2, LOADING)], 10))
    assert health.status == "Progressing"
    assert health.message.startswith("0: transitionStatus | InProgress")


def test_failed_canary_is_degraded_with_knatives_message() -> None:
    """A canary whose model fails to load is Degraded, and the message says why."""
    failed = Revision(R2, FAILED, "Container failed with: model not loadable", exit_code=1)
    health = inferenceservice_health(isvc([Revision(R1, READY), failed], 10))
    assert health.status == "Degraded"
    assert health.message.startswith("0: transitionStatus | BlockedByFailedLoad")
    assert (
        f'PredictorReady | False | RevisionFailed | Revision "{R2}" failed with message: '
        "Container failed with: model not loadable." in health.message
    )
