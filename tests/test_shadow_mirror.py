"""The shadow VirtualService: its document, its checks, and its round trip through an overlay."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError, ManifestInvalid
from controller.manifests.render import render_overlay
from controller.shadow.mirror import (
    CHALLENGER_ANNOTATION,
    PHASE_ANNOTATION,
    SHADOW_FILE,
    VIRTUALSERVICE_SCHEMA,
    ShadowMirror,
    mirror_virtual_service,
    parse_shadow_mirror,
    read_shadow_mirror,
    remove_shadow_mirror,
    validate_virtual_service,
    write_shadow_mirror,
)

ROOT = Path(__file__).resolve().parent.parent
PRIMARY = "fraud-detector-predictor-00001"
CHALLENGER = "fraud-detector-predictor-00002"


def document(namespace: str = "models-staging", percent: float = 10) -> dict[str, Any]:
    return mirror_virtual_service("fraud-detector", namespace, PRIMARY, CHALLENGER, percent)


def overlay_copy(tmp_path: Path, environment: str) -> Path:
    """A copy of manifests/base and one overlay, laid out as in the repository."""
    shutil.copytree(ROOT / "manifests/base", tmp_path / "manifests/base")
    overlay = tmp_path / "manifests/overlays" / environment
    shutil.copytree(ROOT / "manifests/overlays" / environment, overlay)
    return overlay


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


# -- the document --------------------------------------------------------------------------------


def test_document_is_valid_against_the_schema() -> None:
    """The built VirtualService passes the checked-in subset of Istio's schema."""
    validate_virtual_service(document())


def test_document_routes_to_primary_and_mirrors_to_challenger() -> None:
    """All traffic goes to the primary's revision; the challenger's private Service gets 10 %."""
    (route,) = document()["spec"]["http"]
    assert document()["spec"]["hosts"] == [
        "fraud-detector-predictor.models-staging.svc.cluster.local"
    ]
    assert route["route"] == [
        {
            "destination": {
                "host": f"{PRIMARY}.models-staging.svc.cluster.local",
                "port": {"number": 80},
            },
            "weight": 100,
            "headers": {
                "request": {
                    "set": {
                        "Knative-Serving-Namespace": "models-staging",
                        "Knative-Serving-Revision": PRIMARY,
                    }
                }
            },
        }
    ]
    assert route["mirror"] == {
        "host": f"{CHALLENGER}-private.models-staging.svc.cluster.local",
        "port": {"number": 80},
    }
    assert route["mirrorPercentage"] == {"value": 10.0}


def test_document_names_phase_and_challenger() -> None:
    """The annotations say the phase and which revision is being shadowed."""
    metadata = document()["metadata"]
    assert metadata["name"] == "fraud-detector-shadow"
    assert metadata["annotations"] == {
        PHASE_ANNOTATION: "shadow",
        CHALLENGER_ANNOTATION: CHALLENGER,
    }


def test_schema_says_it_is_a_subset_and_where_it_comes_from() -> None:
    """The schema's description is a notice naming it a subset and its upstream source."""
    description = json.loads(VIRTUALSERVICE_SCHEMA.read_text())["description"]
    assert description.startswith("NOTICE: a SUBSET of Istio's VirtualService schema")
    assert "github.com/istio/api" in description


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["spec"]["http"][0]["mirrorPercentage"].update(value=150.0), "150.0"),
        (lambda d: d["spec"]["http"][0].update(mirrorPercent=10), "mirrorPercent"),
        (lambda d: d["spec"]["http"][0]["mirror"].pop("host"), "'host' is a required property"),
        (lambda d: d["spec"]["http"][0]["route"][0].update(weight="all"), "'all'"),
        (lambda d: d.update(apiVersion="networking.istio.io/v1alpha3"), "networking.istio.io/v1"),
    ],
)
def test_schema_refuses_invalid_documents(edit: Any, message: str) -> None:
    """A value out of range, an unknown field or a missing host is refused in one line."""
    invalid = copy.deepcopy(document())
    edit(invalid)
    with pytest.raises(ManifestInvalid, match="VirtualService") as caught:
        validate_virtual_service(invalid, source="x")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# -- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, -1, 100.5, math.nan, math.inf, True, "10"])
def test_percent_outside_zero_to_hundred_is_refused(percent: Any) -> None:
    """The mirrored share must be a number in (0, 100]."""
    with pytest.raises(InputError, match=r"\(0, 100\]"):
        document(percent=percent)


@pytest.mark.parametrize("percent", [0.5, 100])
def test_percent_bounds_are_accepted(percent: float) -> None:
    """A share just above 0 and exactly 100 are valid."""
    assert document(percent=percent)["spec"]["http"][0]["mirrorPercentage"]["value"] == percent


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("Fraud_Detector", "models", PRIMARY, CHALLENGER), "not a DNS-1123 label"),
        (("fraud-detector", "m" * 64, PRIMARY, CHALLENGER), "longer than 63"),
        (("fraud-detector", "models-", PRIMARY, CHALLENGER), "not a DNS-1123 label"),
        (("fraud-detector", "models", PRIMARY, "other-predictor-00002"), "not a revision of"),
        (("fraud-detector", "models", PRIMARY, PRIMARY), "both primary and challenger"),
        (("fraud-detector", "models", PRIMARY, f"{CHALLENGER}{'0' * 30}"), "longer than 55"),
    ],
)
def test_names_are_checked(arguments: tuple[str, str, str, str], message: str) -> None:
    """Names must be DNS-1123 labels, revisions of this predictor, and distinct."""
    with pytest.raises(InputError, match=message):
        mirror_virtual_service(*arguments, 10)


# -- the overlay ---------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["local", "staging", "production"])
def test_write_then_remove_leaves_overlay_byte_identical(tmp_path: Path, environment: str) -> None:
    """Adding and removing the mirror restores every file of the overlay, comments included."""
    overlay = overlay_copy(tmp_path, environment)
    before = snapshot(overlay)
    assert write_shadow_mirror(overlay, document(f"models-{environment}"))
    kustomization = (overlay / "kustomization.yaml").read_text()
    assert f"  - {SHADOW_FILE}\n" in kustomization
    assert "# The model pin:" in kustomization
    assert remove_shadow_mirror(overlay)
    assert snapshot(overlay) == before


def test_comments_after_resources_stay_after_the_list(tmp_path: Path) -> None:
    """A comment below the resources list stays below it while the mirror is listed."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    original = (
        "# An overlay.\n"
        "namespace: models-staging\n"
        "resources:\n"
        "  - ../../base  # shared\n"
        "# The pin follows.\n"
        "patches:\n"
        "  - path: fraud-detector.yaml\n"
    )
    (overlay / "kustomization.yaml").write_text(original)
    write_shadow_mirror(overlay, document())
    assert (overlay / "kustomization.yaml").read_text() == original.replace(
        "  - ../../base  # shared\n", f"  - ../../base  # shared\n  - {SHADOW_FILE}\n"
    )
    remove_shadow_mirror(overlay)
    assert (overlay / "kustomization.yaml").read_text() == original


def test_write_is_idempotent(tmp_path: Path) -> None:
    """Writing the same mirror twice changes nothing the second time."""
    overlay = overlay_copy(tmp_path, "staging")
    assert write_shadow_mirror(overlay, document())
    before = snapshot(overlay)
    assert not write_shadow_mirror(overlay, document())
    assert snapshot(overlay) == before


def test_written_file_is_read_back(tmp_path: Path) -> None:
    """The overlay's file says the challenger and the share; none once removed."""
    overlay = overlay_copy(tmp_path, "staging")
    assert read_shadow_mirror(overlay) is None
    write_shadow_mirror(overlay, document(percent=25))
    assert read_shadow_mirror(overlay) == ShadowMirror(challenger=CHALLENGER, percent=25.0)
    remove_shadow_mirror(overlay)
    assert read_shadow_mirror(overlay) is None
    assert not (overlay / SHADOW_FILE).exists()


def test_file_contents_read_as_the_files_do(tmp_path: Path) -> None:
    """From a Git revision's texts the mirror reads as from the overlay; unlisted, it is none."""
    overlay = overlay_copy(tmp_path, "staging")
    unlisted = (overlay / "kustomization.yaml").read_text()
    write_shadow_mirror(overlay, document(percent=25))
    listed, text = (overlay / "kustomization.yaml").read_text(), (overlay / SHADOW_FILE).read_text()
    parsed = parse_shadow_mirror(listed, text, overlay="staging@main")
    assert parsed == read_shadow_mirror(overlay) == ShadowMirror(CHALLENGER, 25.0)
    assert parse_shadow_mirror(unlisted, text, overlay="staging@main") is None
    assert parse_shadow_mirror(listed, None, overlay="staging@main") is None
    with pytest.raises(ManifestInvalid, match=rf"staging@main/{SHADOW_FILE}: not Sluice's"):
        parse_shadow_mirror(listed, text.replace("sluice.dev/phase", "x/y"), overlay="staging@main")


def test_namespace_must_match_the_overlay(tmp_path: Path) -> None:
    """A mirror built for another namespace is refused: its hosts would name the wrong one."""
    overlay = overlay_copy(tmp_path, "staging")
    before = snapshot(overlay)
    with pytest.raises(InputError, match="deploys to 'models-staging'"):
        write_shadow_mirror(overlay, document("models-production"))
    assert snapshot(overlay) == before


def test_a_file_sluice_did_not_write_is_left_alone(tmp_path: Path) -> None:
    """Neither write nor remove touches a same-named file without the shadow annotation."""
    overlay = overlay_copy(tmp_path, "staging")
    (overlay / SHADOW_FILE).write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    before = snapshot(overlay)
    with pytest.raises(ManifestInvalid, match="rename or remove it"):
        write_shadow_mirror(overlay, document())
    with pytest.raises(ManifestInvalid, match="rename or remove it"):
        remove_shadow_mirror(overlay)
    assert snapshot(overlay) == before


def test_an_invalid_document_is_never_written(tmp_path: Path) -> None:
    """Validation runs before any file is touched."""
    overlay = overlay_copy(tmp_path, "staging")
    before = snapshot(overlay)
    invalid = document()
    invalid["spec"]["http"][0]["mirrorPercentage"]["value"] = 101.0
    with pytest.raises(ManifestInvalid, match="mirrorPercentage"):
        write_shadow_mirror(overlay, invalid)
    assert snapshot(overlay) == before


def test_kustomize_renders_the_virtual_service(tmp_path: Path) -> None:
    """`kubectl kustomize` of the overlay renders the mirror beside the InferenceService."""
    overlay = overlay_copy(tmp_path, "production")
    write_shadow_mirror(overlay, document("models-production", percent=12.5))
    rendered = {document["kind"]: document for document in render_overlay(overlay)}
    assert set(rendered) == {"InferenceService", "VirtualService"}
    virtual_service = rendered["VirtualService"]
    validate_virtual_service(virtual_service, source="rendered")
    assert virtual_service["metadata"]["namespace"] == "models-production"
    assert virtual_service["spec"]["http"][0]["mirrorPercentage"] == {"value": 12.5}
    assert virtual_service["spec"]["http"][0]["mirror"]["host"] == (
        f"{CHALLENGER}-private.models-production.svc.cluster.local"
    )
