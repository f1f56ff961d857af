"""RawDeployment pins: spec.canary[] is read, written, stepped, promoted and rolled back in Git.

Pure tests of the pin editor, the rollout's pin edits, the proposal's canary shape and KServe's
canary admission rules, plus one render of a temporary RawDeployment overlay with kustomize.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from controller.errors import GitConflict, ManifestInvalid
from controller.manifests.deployment_mode import canary_admission_errors, deployment_mode
from controller.manifests.environment import parse_environment
from controller.manifests.manifest import (
    PinnedRelease,
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    read_release,
)
from controller.manifests.render import validate_rendered
from controller.proposals.propose import _replace_raw_canary
from controller.rollout.pin_edits import promote_edit, restore_edit, weight_edit

ROOT = Path(__file__).resolve().parent.parent
PATH = "manifests/overlays/raw/fraud-detector.yaml"
V6, V7, V8 = "s3://models/v6", "s3://models/v7", "s3://models/v8"
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
    serving.kserve.io/deploymentMode: RawDeployment
spec:
  predictor:
    minReplicas: 2
    model:
      modelFormat:
        name: mlflow   # Sluice's serving runtime
      storageUri: s3://models/v6

# v6 was trained on week 0.
"""


def pin(
    version: int = 7, uri: str = V7, previous: int | None = 6, canary: int | None = 10
) -> ReleasePin:
    return ReleasePin("fraud-detector", version, uri, f"run{version}", previous, canary)


def applied(text: str, release: ReleasePin, **mode: str) -> str:
    document = load_pin(text, source="pin.yaml")
    apply_release(document, release, source="pin.yaml", **mode)  # type: ignore[arg-type]
    return dump_pin(document)


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def released(text: str) -> PinnedRelease:
    return read_release(load_pin(text, source="pin.yaml"))


def edited(text: str, edit: object, tmp_path: Path) -> str:
    """Run a rollout pin edit on ``text`` in a work tree, as a commit would."""
    file = tmp_path / PATH
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    edit(tmp_path)  # type: ignore[operator]
    return file.read_text(encoding="utf-8")


@pytest.fixture
def canary_pin() -> str:
    """v7 proposed as a 10% canary beside v6."""
    return applied(PIN, pin())


# -- the proposal ---------------------------------------------------------------------------------


def test_a_canary_is_a_second_predictor_and_the_primary_is_untouched(canary_pin: str) -> None:
    """Proposing v7 adds spec.canary (names, modelFormat, storageUri), leaves spec.predictor."""
    assert changed_lines(PIN, canary_pin) == [
        '-    sluice.dev/model-version: "6"',
        '+    sluice.dev/model-version: "7"',
        "+    sluice.dev/run-id: run7",
        '+    sluice.dev/previous-version: "6"',
        "+  canary:",
        "+    - trafficPercent: 10",
        "+      predictor:",
        "+        name: v7",
        "+        model:",
        "+          name: kserve-container",
        "+          modelFormat:",
        "+            name: mlflow",
        f"+          storageUri: {V7}",
    ]
    assert canary_pin.endswith("storageUri: s3://models/v7\n\n# v6 was trained on week 0.\n")


def test_raw_pin_reads_the_canary_and_the_primary(canary_pin: str) -> None:
    """The pinned version's storage is the canary's; the primary's stays readable beside it."""
    assert released(canary_pin) == PinnedRelease(
        "fraud-detector", 7, V7, "run7", 6, 10, primary_storage_uri=V6, mode="RawDeployment"
    )


def test_raw_pin_without_a_canary_reads_as_the_primary() -> None:
    """With no spec.canary, the primary is the pinned version at full weight."""
    release = released(PIN)
    assert (release.version, release.storage_uri, release.canary_percent) == (6, V6, None)
    assert (release.primary_storage_uri, release.mode) == (V6, "RawDeployment")


def test_environment_mode_writes_raw_into_a_pin_that_does_not_say_it() -> None:
    """A pin without the mode annotation gets it, so KServe accepts spec.canary over the base."""
    plain = PIN.replace("    serving.kserve.io/deploymentMode: RawDeployment\n", "")
    assert deployment_mode(load_pin(plain, source="x")) == "Serverless"
    text = applied(plain, pin(), mode="RawDeployment")
    assert "    serving.kserve.io/deploymentMode: RawDeployment\n" in text
    assert released(text).canary_percent == 10
    assert "canaryTrafficPercent" not in text


def test_serverless_mode_is_unchanged_by_the_raw_support() -> None:
    """A Serverless pin is written the same with the mode given or read from the pin."""
    plain = PIN.replace("    serving.kserve.io/deploymentMode: RawDeployment\n", "")
    assert applied(plain, pin(), mode="Serverless") == applied(plain, pin())
    assert "    canaryTrafficPercent: 10\n" in applied(plain, pin())
    assert "canary:" not in applied(plain, pin()).replace("canaryTrafficPercent", "")


def test_first_deploy_in_raw_mode_pins_the_primary() -> None:
    """Without a previous version the proposal sets spec.predictor's storageUri, no canary."""
    empty = PIN.replace("      storageUri: s3://models/v6\n", "")
    text = applied(empty, pin(version=1, uri=V6, previous=None, canary=None), mode="RawDeployment")
    assert "canary:" not in text
    assert released(text).storage_uri == V6


def test_newer_version_replaces_the_running_canary(canary_pin: str) -> None:
    """v8 proposed while v7 is the canary replaces it beside the primary v6, at the first step."""
    current = released(canary_pin)
    assert _replace_raw_canary(current, 8, first_step=10) == (6, 10)
    text = applied(canary_pin, pin(version=8, uri=V8, previous=6, canary=10))
    assert changed_lines(canary_pin, text) == [
        '-    sluice.dev/model-version: "7"',
        '+    sluice.dev/model-version: "8"',
        "-    sluice.dev/run-id: run7",
        "+    sluice.dev/run-id: run8",
        "-        name: v7",
        "+        name: v8",
        f"-          storageUri: {V7}",
        f"+          storageUri: {V8}",
    ]


def test_proposing_the_primary_version_ends_the_canary(canary_pin: str) -> None:
    """Proposing v6 (what the primary serves) while v7 canaries removes the canary."""
    assert _replace_raw_canary(released(canary_pin), 6, first_step=10) == (None, None)


def test_a_canary_never_takes_the_primary_name() -> None:
    """A primary already named v7 makes the canary of v7 v7-canary (two Deployment names)."""
    named = PIN.replace("    minReplicas: 2\n", "    name: v7\n    minReplicas: 2\n")
    text = applied(named, pin())
    assert "        name: v7-canary\n" in text
    assert canary_admission_errors(load_pin(text, source="x")) == []


# -- the rollout's edits ---------------------------------------------------------------------------


def test_a_step_changes_only_the_canary_weight(canary_pin: str, tmp_path: Path) -> None:
    """Stepping 10% → 50% changes one line: spec.canary[0].trafficPercent."""
    text = edited(canary_pin, weight_edit(PATH, 7, 50), tmp_path)
    assert changed_lines(canary_pin, text) == [
        "-    - trafficPercent: 10",
        "+    - trafficPercent: 50",
    ]


def test_rollback_sets_the_canary_to_zero_with_the_reason(canary_pin: str, tmp_path: Path) -> None:
    """The first rollback commit sends all traffic to the primary and says why."""
    text = edited(canary_pin, weight_edit(PATH, 7, 0, reason="p99  too\nhigh"), tmp_path)
    assert changed_lines(canary_pin, text) == [
        "+    sluice.dev/rollback-reason: p99 too high",
        "-    - trafficPercent: 10",
        "+    - trafficPercent: 0",
    ]
    assert released(text).canary_percent == 0


def test_restore_removes_the_canary_and_gives_back_the_original_pin(
    canary_pin: str, tmp_path: Path
) -> None:
    """After the rollback the restore commit is the pin as it was before the proposal."""
    rolled_back = edited(canary_pin, weight_edit(PATH, 7, 0, reason="bad"), tmp_path)
    previous = ReleasePin("fraud-detector", 6, V6, None, None, None)
    assert edited(rolled_back, restore_edit(PATH, 7, previous), tmp_path) == PIN


def test_promotion_moves_the_canary_into_the_primary(canary_pin: str, tmp_path: Path) -> None:
    """Promotion: the canary's name and storageUri become spec.predictor's; spec.canary goes."""
    stepped = edited(canary_pin, weight_edit(PATH, 7, 50), tmp_path)
    text = edited(stepped, promote_edit(PATH, 7), tmp_path)
    assert changed_lines(PIN, text) == [
        '-    sluice.dev/model-version: "6"',
        '+    sluice.dev/model-version: "7"',
        "+    sluice.dev/run-id: run7",
        '+    sluice.dev/previous-version: "6"',
        "+    name: v7",
        f"-      storageUri: {V6}",
        f"+      storageUri: {V7}",
    ]
    release = released(text)
    assert (release.version, release.storage_uri, release.canary_percent) == (7, V7, None)
    assert edited(text, promote_edit(PATH, 7), tmp_path) == text  # a rerun changes nothing


def test_next_canary_after_a_promotion_gets_its_own_name(canary_pin: str, tmp_path: Path) -> None:
    """After v7 is promoted (primary named v7), v8's canary is v8 and the file stays valid."""
    promoted = edited(canary_pin, promote_edit(PATH, 7), tmp_path)
    text = applied(promoted, pin(version=8, uri=V8, previous=7, canary=10))
    document = load_pin(text, source="x")
    assert document["spec"]["predictor"]["name"] == "v7"
    assert document["spec"]["canary"][0]["predictor"]["name"] == "v8"
    assert canary_admission_errors(document) == []


def test_no_weight_to_move_without_a_canary(tmp_path: Path) -> None:
    """In raw mode a fully rolled-out version has no earlier Deployment to send traffic to."""
    with pytest.raises(ManifestInvalid, match=r"has no spec\.canary"):
        edited(PIN, weight_edit(PATH, 6, 0, reason="bad"), tmp_path)


def test_an_edit_for_another_version_is_refused(canary_pin: str, tmp_path: Path) -> None:
    """The compare-and-swap holds in raw mode: an edit decided for v6 never touches v7's pin."""
    with pytest.raises(GitConflict, match="now pins v7, not v6"):
        edited(canary_pin, promote_edit(PATH, 6), tmp_path)


# -- what KServe admits ----------------------------------------------------------------------------


def raw_document(
    *canaries: dict[str, object], mode: str | None = "RawDeployment"
) -> dict[str, object]:
    annotations = {"serving.kserve.io/deploymentMode": mode} if mode else {}
    return {
        "metadata": {"name": "fraud-detector", "annotations": annotations},
        "spec": {"predictor": {"model": {"storageUri": V6}}, "canary": list(canaries)},
    }


def canary(name: str | None = "v7", percent: int = 10, **extra: object) -> dict[str, object]:
    predictor: dict[str, object] = {"model": {"storageUri": V7}, **extra}
    if name:
        predictor["name"] = name
    return {"trafficPercent": percent, "predictor": predictor}


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (raw_document(canary(), mode="Serverless"), "needs RawDeployment mode"),
        (raw_document(canary(name=None)), "predictor.name is required"),
        (raw_document(canary(), canary()), "'v7' is used by another canary"),
        (raw_document(canary("a", 60), canary("b", 50)), "add up to 110"),
        (raw_document(canary(scaleTarget=3)), "scaleTarget is not allowed"),
        (raw_document(canary("x" * 50)), "longer than 63"),
    ],
)
def test_kserve_admission_rules_for_canaries(document: dict[str, object], error: str) -> None:
    """Each rule KServe's webhook applies to spec.canary is checked before a commit."""
    errors = canary_admission_errors(document)
    assert len(errors) == 1, errors
    assert error in errors[0]


def test_canary_without_mode_annotation_is_admitted() -> None:
    """Without the annotation the cluster's default mode applies, which may be RawDeployment."""
    assert canary_admission_errors(raw_document(canary(), mode=None)) == []
    assert deployment_mode(raw_document(canary(), mode=None)) == "RawDeployment"


# -- render and validate a RawDeployment overlay ---------------------------------------------------


def raw_overlay(tmp_path: Path, text: str) -> Path:
    """A copy of manifests/base and an overlay ``raw`` whose pin is ``text``."""
    shutil.copytree(ROOT / "manifests/base", tmp_path / "manifests/base")
    overlay = tmp_path / "manifests/overlays/raw"
    overlay.mkdir(parents=True)
    shutil.copy(ROOT / "manifests/overlays/staging/kustomization.yaml", overlay)
    staging = (ROOT / "manifests/overlays/staging/sluice.yaml").read_text()
    config = staging.replace("name: staging", "name: raw").replace(
        "deploymentMode: Serverless", "deploymentMode: RawDeployment"
    )
    (overlay / "sluice.yaml").write_text(config)
    (overlay / "fraud-detector.yaml").write_text(text)
    return overlay


def test_raw_overlay_renders_and_validates(canary_pin: str, tmp_path: Path) -> None:
    """The base plus a RawDeployment pin renders to a valid InferenceService with a canary."""
    overlay = raw_overlay(tmp_path, canary_pin)
    config = parse_environment((overlay / "sluice.yaml").read_text(), source="x", environment="raw")
    assert config.deployment_mode == "RawDeployment"
    (document,) = validate_rendered(overlay)
    annotations = document["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/enable-tag-routing"] == "true"
    assert document["spec"]["predictor"]["model"]["runtime"] == "sluice-mlflow"
    assert document["spec"]["canary"] == [
        {
            "trafficPercent": 10,
            "predictor": {
                "name": "v7",
                "model": {
                    "name": "kserve-container",
                    "modelFormat": {"name": "mlflow"},
                    "storageUri": V7,
                },
            },
        }
    ]


def test_raw_overlay_that_keeps_the_serverless_mode_is_refused(
    canary_pin: str, tmp_path: Path
) -> None:
    """A canary whose pin does not override the base's Serverless mode never validates."""
    text = canary_pin.replace("    serving.kserve.io/deploymentMode: RawDeployment\n", "")
    with pytest.raises(ManifestInvalid, match=r"needs RawDeployment mode.*KServe would refuse it"):
        validate_rendered(raw_overlay(tmp_path, text))


def test_an_edit_decided_at_another_weight_is_refused(canary_pin: str, tmp_path: Path) -> None:
    """A second controller's stale step (decided at 10%) cannot overwrite a canary now at 50%."""
    from controller.errors import GitConflict

    stepped = edited(canary_pin, weight_edit(PATH, 7, 50, expect=10), tmp_path)
    with pytest.raises(GitConflict, match="at 50%"):
        edited(stepped, promote_edit(PATH, 7, expect=10), tmp_path)
    with pytest.raises(GitConflict, match="at 50%"):
        edited(stepped, weight_edit(PATH, 7, 0, reason="late", expect=10), tmp_path)
    # A rerun of the same step after a lost push answer finds its own result: no conflict.
    assert edited(stepped, weight_edit(PATH, 7, 50, expect=10), tmp_path) == stepped
