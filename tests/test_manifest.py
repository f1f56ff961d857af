"""Editing a model pin keeps comments, order and quoting, and changes only what it owns."""

from __future__ import annotations

import difflib

import pytest

from controller.errors import ManifestInvalid
from controller.manifests.manifest import (
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    read_release,
)

PIN = """\
# Reviewed file: keep this comment.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud-detector
  annotations:
    team: "payments"   # quoted on purpose
    sluice.dev/model-name: fraud-detector
    sluice.dev/model-version: "6"
spec:
  predictor:
    minReplicas: 2
    model:
      modelFormat:
        name: mlflow
      storageUri: s3://bucket/v6
"""
LONG_URI = (
    "s3://sluice-models/mlflow-artifacts/12/models/m-0123456789abcdef0123456789abcdef/artifacts"
)


def edit(text: str, **changes: object) -> str:
    document = load_pin(text, source="pin.yaml")
    values = {
        "model": "fraud-detector", "version": 7, "storage_uri": LONG_URI,
        "run_id": "r7", "previous_version": 6, "canary_percent": 10,
    }  # fmt: skip
    apply_release(document, ReleasePin(**{**values, **changes}), source="pin.yaml")  # type: ignore[arg-type]
    return dump_pin(document)


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_only_the_pinned_lines_change() -> None:
    """Comments, quoting and unrelated keys survive; the long URI stays on one line."""
    assert changed_lines(PIN, edit(PIN)) == [
        '-    sluice.dev/model-version: "6"',
        '+    sluice.dev/model-version: "7"',
        "+    sluice.dev/run-id: r7",
        '+    sluice.dev/previous-version: "6"',
        "+    canaryTrafficPercent: 10",
        "-      storageUri: s3://bucket/v6",
        f"+      storageUri: {LONG_URI}",
    ]


def test_round_trip_reads_back_what_was_written() -> None:
    """read_release sees the values apply_release wrote."""
    release = read_release(load_pin(edit(PIN), source="x"))
    assert (release.version, release.previous_version, release.canary_percent) == (7, 6, 10)
    assert release.storage_uri == LONG_URI


def test_no_canary_removes_the_field() -> None:
    """Promotion (canary None) removes canaryTrafficPercent rather than writing 100."""
    with_canary = edit(PIN)
    promoted = edit(with_canary, canary_percent=None)
    assert "canaryTrafficPercent" not in promoted
    assert "# Reviewed file: keep this comment." in promoted


def test_malformed_yaml_names_the_file_and_line() -> None:
    """A broken pin is reported with its line."""
    with pytest.raises(ManifestInvalid, match=r"pin\.yaml: malformed YAML at line"):
        load_pin("kind: InferenceService\nmetadata: [\n", source="pin.yaml")


def test_other_kinds_are_refused() -> None:
    """Only an InferenceService can be a pin."""
    with pytest.raises(ManifestInvalid, match="not an InferenceService"):
        load_pin("kind: Deployment\n", source="pin.yaml")
