"""Each environment's evidence counts only when signed by its controller's keys, which are read
from the GitOps repository's default branch: a proposal branch cannot bring its own key."""

from __future__ import annotations

import pytest
from support.envelopes import CI_PUBLIC, OTHER_PUBLIC
from support.gitops_repo import manifest_files

from controller.errors import ConfigError
from controller.evidence.keys import read_controller_keys
from controller.manifests.environment import EnvironmentConfig, parse_environment
from controller.testing import MemoryReleaseRepository

CONFIG = "manifests/overlays/{env}/sluice.yaml"


def _environment(env: str, extra: str) -> EnvironmentConfig:
    text = manifest_files()[CONFIG.format(env=env)] + extra + "\n"
    return parse_environment(text, source="sluice.yaml", environment=env)


def test_each_environment_trusts_its_own_controller_keys_and_one_without_trusts_none() -> None:
    staging = _environment("staging", "evidence: {controllerKeys: [keys/staging.pub]}")
    production = _environment("production", "evidence: {controllerKeys: [keys/prod.pub]}")
    local = _environment("local", "")
    repo = MemoryReleaseRepository(
        {"keys/staging.pub": CI_PUBLIC.decode(), "keys/prod.pub": OTHER_PUBLIC.decode()}
    )
    repo.sync()
    keys = read_controller_keys(repo, [staging, production, local])
    assert {env: len(found) for env, found in keys.items()} == {
        "staging": 1, "production": 1, "local": 0,
    }  # fmt: skip
    assert keys["staging"][0].keyid != keys["production"][0].keyid


def test_a_controller_key_missing_from_the_default_branch_is_named() -> None:
    staging = _environment("staging", "evidence: {controllerKeys: [keys/gone.pub]}")
    repo = MemoryReleaseRepository({"README.md": "x"})
    repo.sync()
    with pytest.raises(ConfigError, match=r"controllerKeys names keys/gone.pub, which is not on"):
        read_controller_keys(repo, [staging])


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("evidence: {controllerKeys: []}", "controllerKeys"),
        ("evidence: {controllerKeys: [../k.pub]}", "must be a path inside the GitOps"),
        ("evidence: {keys: [k.pub]}", "evidence.controllerKeys: Field required"),
    ],
)
def test_an_evidence_block_that_cannot_work_is_refused_when_read(block: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _environment("staging", block)
