"""Reading a shadow phase from an InferenceService manifest (controller.shadow.phase)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import ConfigError
from controller.shadow.phase import (
    MIRROR_PERCENT_ANNOTATION,
    PHASE_ANNOTATION,
    SHADOW_PHASE,
    ShadowRequest,
    ShadowRevisions,
    shadow_request,
    shadow_revisions,
)

URI = "mlflow-artifacts:/1/models/m-2/artifacts"
R1, R2, R3 = (f"fraud-predictor-0000{k}" for k in (1, 2, 3))


def isvc(annotations: dict[str, Any] | None = None, canary: object = 0) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": URI}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    metadata: dict[str, Any] = {"name": "fraud"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"kind": "InferenceService", "metadata": metadata, "spec": {"predictor": predictor}}


def test_shadow_annotation_at_zero_percent_mirrors_every_request() -> None:
    """The shadow annotation with canaryTrafficPercent 0 asks for 100 % of requests mirrored."""
    assert shadow_request(isvc({PHASE_ANNOTATION: SHADOW_PHASE})) == ShadowRequest(100.0)


def test_mirror_percent_annotation_sets_the_share() -> None:
    """sluice.dev/mirror-percent "25" mirrors a quarter of the requests."""
    annotations = {PHASE_ANNOTATION: SHADOW_PHASE, MIRROR_PERCENT_ANNOTATION: "25"}
    assert shadow_request(isvc(annotations)) == ShadowRequest(25.0)


def test_fractional_and_full_percents_are_accepted() -> None:
    """Percents are numbers in (0, 100]: 0.5 and 100 are both valid."""
    for raw, expected in (("0.5", 0.5), ("100", 100.0), (" 7 ", 7.0)):
        annotations = {PHASE_ANNOTATION: SHADOW_PHASE, MIRROR_PERCENT_ANNOTATION: raw}
        assert shadow_request(isvc(annotations)) == ShadowRequest(expected)


def test_rollback_at_zero_percent_without_the_annotation_is_no_shadow() -> None:
    """canaryTrafficPercent 0 alone is a rollback, not a shadow phase."""
    assert shadow_request(isvc()) is None
    assert shadow_request(isvc({"sluice.dev/model-version": "2"})) is None


def test_shadow_annotation_with_traffic_is_no_shadow() -> None:
    """The annotation with canaryTrafficPercent 10 (or none at all) is a canary, not a shadow."""
    annotations = {PHASE_ANNOTATION: SHADOW_PHASE}
    assert shadow_request(isvc(annotations, canary=10)) is None
    assert shadow_request(isvc(annotations, canary=None)) is None
    assert shadow_request(isvc(annotations, canary=False)) is None


def test_other_phase_values_are_no_shadow() -> None:
    """Only the exact value "shadow" names the phase."""
    for phase in ("canary", "Shadow", ""):
        assert shadow_request(isvc({PHASE_ANNOTATION: phase})) is None


def test_bad_percent_of_a_non_shadow_manifest_is_ignored() -> None:
    """A mirror percent is only read while the manifest asks for a shadow."""
    assert shadow_request(isvc({MIRROR_PERCENT_ANNOTATION: "lots"})) is None


@pytest.mark.parametrize("raw", ["0", "-5", "100.5", "abc", "", "nan", "inf", True, ["50"]])
def test_bad_percent_is_a_config_error_naming_the_annotation(raw: object) -> None:
    """A mirror percent outside (0, 100] fails with one line naming the annotation and the fix."""
    annotations = {PHASE_ANNOTATION: SHADOW_PHASE, MIRROR_PERCENT_ANNOTATION: raw}
    with pytest.raises(ConfigError) as caught:
        shadow_request(isvc(annotations))
    message = caught.value.message
    assert MIRROR_PERCENT_ANNOTATION in message
    assert "fraud" in message
    assert "(0, 100]" in message
    assert "\n" not in message


def test_manifest_without_metadata_or_spec_is_no_shadow() -> None:
    """A manifest missing metadata or spec asks for nothing (and does not raise)."""
    assert shadow_request({}) is None
    assert shadow_request({"metadata": {"annotations": {PHASE_ANNOTATION: SHADOW_PHASE}}}) is None


@given(st.floats(min_value=0, max_value=200, allow_nan=False))
def test_every_accepted_percent_lies_in_the_open_closed_interval(value: float) -> None:
    """Any number is either accepted as itself in (0, 100] or refused."""
    annotations = {PHASE_ANNOTATION: SHADOW_PHASE, MIRROR_PERCENT_ANNOTATION: repr(value)}
    if 0 < value <= 100:
        assert shadow_request(isvc(annotations)) == ShadowRequest(value)
    else:
        with pytest.raises(ConfigError):
            shadow_request(isvc(annotations))


def status(*traffic: dict[str, Any]) -> dict[str, Any]:
    return {"components": {"predictor": {"traffic": list(traffic)}}}


LATEST_AT_ZERO = {"latestRevision": True, "percent": 0, "revisionName": R2, "tag": "latest"}
PREV_AT_100 = {"latestRevision": False, "percent": 100, "revisionName": R1, "tag": "prev"}


def test_latest_revision_at_zero_beside_the_primary_is_the_shadow() -> None:
    """The latest revision at 0 % shadows the revision taking 100 %."""
    assert shadow_revisions(status(LATEST_AT_ZERO, PREV_AT_100)) == ShadowRevisions(R2, R1)


def test_loading_revision_gives_no_shadow_yet() -> None:
    """While the new revision loads, latestRevision resolves to the primary: no shadow."""
    loading = {**LATEST_AT_ZERO, "revisionName": R1}
    assert shadow_revisions(status(loading, PREV_AT_100)) is None


def test_canary_and_promotion_give_no_shadow() -> None:
    """A latest revision with traffic (10 % or all of it) is no shadow."""
    canary = {**LATEST_AT_ZERO, "percent": 10}
    assert shadow_revisions(status(canary, {**PREV_AT_100, "percent": 90})) is None
    promoted = {"latestRevision": True, "percent": 100, "revisionName": R2}
    assert shadow_revisions(status(promoted)) is None


def test_status_without_traffic_gives_no_shadow() -> None:
    """An empty or missing status has no shadow."""
    assert shadow_revisions({}) is None
    assert shadow_revisions(status()) is None
