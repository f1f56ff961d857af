"""The shipped fakes' behaviours by storage URI: markers are whole words, never hex digits."""

from __future__ import annotations

from controller.testing.behaviours import FAILING, HEALTHY, SLOW, UNLOADABLE, Behaviour, Behaviours


def test_the_default_markers_name_what_a_uri_says() -> None:
    """``bad``, ``slow`` and ``unloadable`` as words of a path pick their behaviour."""
    behaviours = Behaviours()
    assert behaviours.of("file:///models/bad-v3") == FAILING
    assert behaviours.of("s3://models/slow/v2") == SLOW
    assert behaviours.of("file:///models/unloadable-v4") == UNLOADABLE
    assert behaviours.of("file:///models/good-v1") == HEALTHY


def test_a_registry_id_that_spells_bad_in_hex_is_healthy() -> None:
    """MLflow's model and run ids are hex, and about one in 140 contains ``bad``: such a version
    once failed its smoke in test_rollout_mirror (CI) because the marker matched inside the id."""
    uri = "mlflow-artifacts:/1/models/m-3f2bad94c1e04d8e9a7b6c5d4e3f2a1b/artifacts"
    assert Behaviours().of(uri) == HEALTHY


def test_a_marker_that_starts_with_a_slash_follows_any_segment() -> None:
    """A custom marker such as ``/cold-model`` matches after a run's hex id, as the chaos test
    registers its versions."""
    cold = Behaviour(cold_runs=1)
    behaviours = Behaviours().with_marker("/cold-model", cold)
    assert behaviours.of("mlflow-artifacts:/1/0a9b8c7d/artifacts/cold-model") == cold
    assert behaviours.of("mlflow-artifacts:/1/0a9b8c7d/artifacts/bad-model") == FAILING
