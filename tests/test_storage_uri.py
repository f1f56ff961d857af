"""Registry locations become storage URIs an environment allows."""

from __future__ import annotations

import pytest

from controller.errors import InputError
from controller.manifests.environment import StorageConfig
from controller.manifests.storage_uri import map_storage_uri

STAGING = StorageConfig.model_validate(
    {
        "allowedSchemes": ["s3", "file"],
        "rewrites": [{"prefix": "mlflow-artifacts:/", "replacement": "s3://bucket/mlflow/"}],
    }
)
PRODUCTION = StorageConfig.model_validate({"allowedSchemes": ["s3", "gs"]})


def test_proxied_artifacts_are_rewritten_to_the_bucket() -> None:
    """`mlflow-artifacts:/` maps to the environment's bucket prefix."""
    uri = map_storage_uri(
        "mlflow-artifacts:/1/models/m-1/artifacts", STAGING, environment="staging"
    )
    assert uri == "s3://bucket/mlflow/1/models/m-1/artifacts"


def test_local_paths_become_file_uris_where_allowed() -> None:
    """A bare path from a local artifact root is a file:// URI."""
    assert (
        map_storage_uri("/srv/mlruns/1/a", STAGING, environment="staging")
        == "file:///srv/mlruns/1/a"
    )


def test_file_uris_are_refused_in_production() -> None:
    """A laptop path never reaches production: the error names scheme, environment and fix."""
    with pytest.raises(InputError) as caught:
        map_storage_uri("/srv/mlruns/1/a", PRODUCTION, environment="production")
    message = str(caught.value)
    assert "scheme 'file'" in message
    assert "'production'" in message
    assert "allowed: s3, gs" in message


def test_unmapped_registry_scheme_is_refused() -> None:
    """Without a rewrite, an mlflow-artifacts URI cannot reach KServe."""
    with pytest.raises(InputError, match="scheme 'mlflow-artifacts'"):
        map_storage_uri("mlflow-artifacts:/1/x", PRODUCTION, environment="production")
