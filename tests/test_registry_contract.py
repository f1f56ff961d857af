"""One contract, two registries: MlflowRegistry on the session's MLflow server and the in-memory
MemoryRegistry answer the services' questions alike, misses and mistakes included."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from support.registry import register_version

from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import InputError, ModelNotFound
from controller.testing import MemoryRegistry

METRICS = {"roc_auc": 0.91, "pr_auc": 0.42}


@dataclass
class Registry:
    """A registry under test and how to register a version in it (as training does)."""

    under_test: MlflowRegistry | MemoryRegistry
    register: Callable[[str, str | None], int]


@pytest.fixture(params=[pytest.param("mlflow", marks=pytest.mark.slow), "memory"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """MLflow's registry (the session's server) or the fake."""
    if request.param == "memory":
        fake = MemoryRegistry()
        return Registry(fake, lambda name, alias: fake.register(name, alias=alias, metrics=METRICS))
    uri = request.getfixturevalue("mlflow_server").tracking_uri
    return Registry(
        MlflowRegistry(uri),
        lambda name, alias: register_version(uri, name, alias=alias, metrics=METRICS),
    )


@pytest.fixture
def name() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


def test_a_version_resolves_by_number_and_by_alias(registry: Registry, name: str) -> None:
    """The same version, with its run, its aliases and where its artifacts are."""
    version = registry.register(name, "challenger")
    by_number = registry.under_test.resolve(name, version=version)
    by_alias = registry.under_test.resolve(name, alias="challenger")
    assert by_number == by_alias
    assert by_number.version == version
    assert by_number.aliases == ("challenger",)
    assert by_number.run_id
    assert by_number.artifact_uri.startswith("mlflow-artifacts:/")
    assert not by_number.quarantined


def test_misses_are_model_not_found(registry: Registry, name: str) -> None:
    """An unknown model, version or alias is ModelNotFound; version_by_alias says None."""
    registry.register(name, None)
    with pytest.raises(ModelNotFound):
        registry.under_test.resolve(name, version=99)
    with pytest.raises(ModelNotFound):
        registry.under_test.resolve(name, alias="champion")
    with pytest.raises(ModelNotFound):
        registry.under_test.resolve(f"{name}-unknown", alias="champion")
    assert registry.under_test.version_by_alias(name, "champion") is None
    assert registry.under_test.version_by_alias(f"{name}-unknown", "champion") is None
    with pytest.raises(ModelNotFound):
        registry.under_test.registered_model_tags(f"{name}-unknown")


def test_exactly_one_of_version_and_alias(registry: Registry, name: str) -> None:
    """Asking by both, or by neither, is the caller's mistake."""
    registry.register(name, "challenger")
    with pytest.raises(InputError, match="exactly one"):
        registry.under_test.resolve(name, version=1, alias="challenger")
    with pytest.raises(InputError, match="exactly one"):
        registry.under_test.resolve(name)


def test_aliases_move_and_are_listed_in_one_read(registry: Registry, name: str) -> None:
    """set_alias moves an alias; aliases_of has the named models' (and only those registered),
    all_aliases every model's; version_by_alias follows."""
    first = registry.register(name, "challenger")
    second = registry.register(name, "challenger")
    registry.under_test.set_alias(name, "champion", first)
    assert registry.under_test.all_aliases()[name] == {"challenger": second, "champion": first}
    assert registry.under_test.aliases_of([name, f"{name}-unregistered"]) == {
        name: {"challenger": second, "champion": first}
    }
    assert registry.under_test.aliases_of([]) == {}
    registry.under_test.set_alias(name, "champion", second)
    champion = registry.under_test.version_by_alias(name, "champion")
    assert champion is not None
    assert champion.version == second
    assert registry.under_test.resolve(name, version=second).aliases == ("challenger", "champion")
    assert registry.under_test.resolve(name, version=first).aliases == ()


def test_version_tags_are_kept_and_merged(registry: Registry, name: str) -> None:
    """Tags set on a version are read back with it, later sets adding to earlier ones."""
    version = registry.register(name, "challenger")
    registry.under_test.set_version_tags(name, version, {"sluice.quarantined": "errors"})
    registry.under_test.set_version_tags(name, version, {"sluice.rollout.staging": "aborted"})
    resolved = registry.under_test.resolve(name, version=version)
    assert resolved.tags == {
        "sluice.quarantined": "errors",
        "sluice.rollout.staging": "aborted",
    }
    assert resolved.quarantined


def test_model_tags_round_trip(registry: Registry, name: str) -> None:
    """A tag on the registered model (a cool-down) is read back; a new model has none."""
    registry.register(name, None)
    assert registry.under_test.registered_model_tags(name) == {}
    registry.under_test.set_registered_model_tag(name, "sluice.retrain", "started")
    assert registry.under_test.registered_model_tags(name) == {"sluice.retrain": "started"}


def test_the_run_behind_a_version(registry: Registry, name: str) -> None:
    """Its metrics and a link; no reference profile when training logged none."""
    version = registry.register(name, "challenger")
    run_id = registry.under_test.resolve(name, version=version).run_id
    assert run_id is not None
    run = registry.under_test.run_summary(run_id)
    assert run.run_id == run_id
    assert run.metrics == METRICS
    assert run_id in run.url
    assert registry.under_test.reference_profile(run_id) is None
    assert registry.under_test.version_url(name, version).endswith(
        f"/#/models/{name}/versions/{version}"
    )
