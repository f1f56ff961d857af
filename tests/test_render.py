"""Overlays render as Argo CD renders them and validate against KServe's own schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from upstream.sources import UPSTREAM

from controller.errors import ConfigError, ManifestInvalid
from controller.manifests.environment import load_environment
from controller.manifests.render import validate_inferenceservice, validate_rendered
from controller.schemas import INFERENCESERVICE_SCHEMA, extract_openapi_schema

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_CRD = UPSTREAM / "kserve/config/crd/full/serving.kserve.io_inferenceservices.yaml"


@pytest.mark.parametrize("environment", ["local", "staging", "production"])
def test_every_overlay_renders_and_validates(environment: str) -> None:
    """Each environment renders to one valid InferenceService in its namespace."""
    (document,) = validate_rendered(ROOT / "manifests/overlays" / environment)
    assert document["kind"] == "InferenceService"
    assert document["metadata"]["namespace"] == f"models-{environment}"
    assert document["spec"]["predictor"]["model"]["modelFormat"]["name"] == "mlflow"


@pytest.mark.parametrize("environment", ["local", "staging", "production"])
def test_every_environment_config_loads(environment: str) -> None:
    """Each overlay's sluice.yaml is a valid environment that names its pin."""
    config = load_environment(ROOT, environment)
    for release in config.releases:
        assert (ROOT / "manifests/overlays" / environment / release.pin).is_file()


def test_production_never_accepts_local_files() -> None:
    """Production's storage allow-list has no file scheme."""
    assert "file" not in load_environment(ROOT, "production").storage.allowed_schemes


def test_unknown_environment_lists_the_known_ones() -> None:
    """A typo in --env is answered with the environments that exist."""
    with pytest.raises(ConfigError, match="known: local, production, staging"):
        load_environment(ROOT, "prod")


def test_schema_errors_name_the_field() -> None:
    """An invalid field is reported with its path in one line."""
    document = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"predictor": {"canaryTrafficPercent": "ten"}},
    }
    with pytest.raises(ManifestInvalid, match=r"spec\.predictor\.canaryTrafficPercent: 'ten'"):
        validate_inferenceservice(document, source="x")


def test_packaged_schema_matches_the_upstream_crd() -> None:
    """The packaged schema is exactly what the extraction gives from KServe's CRD (vendored)."""
    assert json.loads(INFERENCESERVICE_SCHEMA.read_text()) == extract_openapi_schema(UPSTREAM_CRD)


def test_environment_schema_is_printed() -> None:
    """`sluice config schema environment` documents the overlay's sluice.yaml."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "config", "schema", "environment"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    schema = json.loads(result.stdout)
    assert {"releases", "storage", "rollout", "deploymentMode"} <= set(schema["properties"])
    # A release's own policy: a partial RolloutPolicy, merged over the environment's.
    release_rollout = schema["$defs"]["ReleaseConfig"]["properties"]["rollout"]
    assert "deep-merged over the environment's rollout" in release_rollout["description"]
    assert {"$ref": "#/$defs/RolloutPolicy"} in release_rollout["anyOf"]


EXAMPLE_OVERLAYS = ["models/market_regime/overlay", "models/recommender/overlay"]


@pytest.mark.parametrize("overlay", EXAMPLE_OVERLAYS)
def test_every_example_overlay_renders_validates_and_loads(overlay: str, tmp_path: Path) -> None:
    """An example's overlay, which a demo copies to manifests/overlays/local/, renders to valid
    objects and its sluice.yaml loads as the local environment with every pin present."""
    documents = validate_rendered(ROOT / overlay)
    assert {d["metadata"]["namespace"] for d in documents} == {"models-local"}
    shutil.copytree(ROOT / overlay, tmp_path / "manifests/overlays/local")
    config = load_environment(tmp_path, "local")
    pins = {release.pin for release in config.releases}
    assert pins <= {path.name for path in (ROOT / overlay).iterdir()}
    names = {d["metadata"]["name"] for d in documents if d["kind"] == "InferenceService"}
    assert {release.inference_service for release in config.releases} == names
