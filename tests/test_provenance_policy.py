"""An environment's provenance policy as ``propose`` applies it, with the in-memory registry,
Git remote, forge and attestation store and the real verification: what is refused before
anything is written, what only warns, and what a verified proposal carries (the pin's
annotations, the model card's chain). ``tests/test_provenance_enforce.py`` runs the same
through the command line against a real MLflow server and Git remote."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from ruamel.yaml import YAML
from support.envelopes import CI_PUBLIC, COMMIT, FILES, OTHER_PUBLIC, envelope
from support.gitops_repo import manifest_files

from controller.cli import main
from controller.commands.lineage import read_lineage_facts
from controller.errors import ConfigError, ExitCode, GateFailed, TransientError
from controller.manifests.environment import parse_environment
from controller.ports import Target
from controller.proposals.propose import ProposalRequest, propose
from controller.provenance.signing import envelope_digest, load_public_key
from controller.testing import MemoryRegistry, MemoryReleaseRepository
from controller.testing.attestations import MemoryAttestations
from controller.testing.forge import MemoryForge

MODEL = "fraud-detector"
CONFIG = "manifests/overlays/{env}/sluice.yaml"
PIN = "manifests/overlays/{env}/fraud-detector.yaml"
POLICY = """
provenance:
  trustedKeys: [keys/ci.pub]
  builders: ["https://github.com/acme/models/actions/runs/*"]
"""


def _envelope(*, signed: bool = True, builder: str | None = None) -> bytes:
    if builder is None:
        return envelope(MODEL, signed=signed)
    return envelope(MODEL, signed=signed, builder=builder)


class Setup:
    """A GitOps repository whose ``env`` has ``policy``, and version 1 of the model recorded
    with ``envelope`` (its tags as training writes them)."""

    def __init__(self, envelope: bytes | None, *, policy: str = POLICY, env: str = "production"):
        self.env = env
        files = manifest_files(MODEL)
        files[CONFIG.format(env=env)] += policy
        files["keys/ci.pub"] = CI_PUBLIC.decode()
        files["keys/other.pub"] = OTHER_PUBLIC.decode()
        self.workspace = MemoryReleaseRepository(files)
        self.before = {b: self.workspace.remote_sha(b) for b in ("main",)}
        self.registry = MemoryRegistry()
        self.tags = {
            "sluice.provenance": envelope_digest(envelope) if envelope else "unsigned",
            "sluice.dataset_digest": "train=sha256:9f2e",
            "sluice.training_commit": COMMIT,
        }
        self.registry.register(MODEL, tags=self.tags)
        self.attestations = MemoryAttestations()
        self.attestations.record(MODEL, 1, FILES, envelope)
        self.forge = MemoryForge()

    def propose(self, **request: Any) -> Any:
        return propose(
            ProposalRequest(model=MODEL, environment=self.env, version=1, **request),
            registry=self.registry, workspace=self.workspace, forge=self.forge,
            attestations=self.attestations,
        )  # fmt: skip

    def outcome_tag(self) -> str:
        return self.registry.resolve(MODEL, version=1).tags[f"sluice.provenance.{self.env}"]


@pytest.mark.parametrize(
    ("envelope", "policy", "tamper", "failed"),
    [
        (None, POLICY, False, "attestation check failed: the version has no provenance"),
        (_envelope(signed=False), POLICY, False, "signature check failed: the attestation is "
         "unsigned"),
        (_envelope(), POLICY.replace("ci.pub", "other.pub"), False, "signature check failed: no "
         "trusted key signed it"),
        (_envelope(builder="local"), POLICY, False, "builder check failed: built by local, not an "
         "allowed builder"),
        (_envelope(), POLICY, True, "subjects check failed: model.pkl has sha256"),
    ],
    ids=["no-attestation", "unsigned", "wrong-key", "wrong-builder", "tampered"],
)  # fmt: skip
def test_enforce_refuses_before_anything_is_written_and_tags_the_version(
    envelope: bytes | None, policy: str, tamper: bool, failed: str
) -> None:
    setup = Setup(envelope, policy=policy)
    if tamper:
        setup.attestations.tamper(MODEL, 1, "model.pkl", b"swapped")
    with pytest.raises(GateFailed) as refused:
        setup.propose()
    assert refused.value.exit_code == ExitCode.GATE_FAILED
    assert f"{MODEL} v1: provenance {failed}" in refused.value.message
    assert refused.value.message.endswith("production requires verified provenance, so nothing "
                                          "was proposed")  # fmt: skip
    assert setup.workspace.remote_sha(f"sluice/production/{MODEL}/v1") is None
    assert {b: setup.workspace.remote_sha(b) for b in ("main",)} == setup.before
    assert setup.forge.pulls == {}
    assert setup.outcome_tag().startswith("refused: ")


def test_a_dry_run_refuses_too_but_tags_nothing() -> None:
    setup = Setup(_envelope(signed=False))
    with pytest.raises(GateFailed):
        setup.propose(dry_run=True)
    assert "sluice.provenance.production" not in setup.registry.resolve(MODEL, version=1).tags


def test_a_verified_version_is_proposed_with_its_provenance_in_the_pin_and_the_card() -> None:
    envelope = _envelope()
    setup = Setup(envelope)
    result = setup.propose()
    assert result.status == "proposed"
    assert result.provenance is not None
    assert result.provenance.startswith(f"{MODEL} v1: provenance verified (3 files match")
    assert result.warnings == ()
    assert setup.outcome_tag().startswith("verified: 3 files match, signed by key")

    pin = setup.workspace.read(result.branch, PIN.format(env="production"))
    assert pin is not None
    annotations = YAML(typ="safe").load(pin)["metadata"]["annotations"]
    assert annotations["sluice.dev/provenance"] == envelope_digest(envelope)
    assert annotations["sluice.dev/dataset-digest"] == "train=sha256:9f2e"
    assert annotations["sluice.dev/training-commit"] == COMMIT

    (pull,) = setup.forge.pulls.values()
    assert "- **Provenance:** verified for production: 3 files match" in pull.body
    assert f"  - attestation: `{envelope_digest(envelope)}`" in pull.body
    assert f"  - training commit: `{COMMIT}`" in pull.body
    assert "  - datasets: `train=sha256:9f2e`" in pull.body


def test_warn_mode_proposes_with_the_warning_in_the_output_and_the_pull_request() -> None:
    setup = Setup(_envelope(signed=False), policy=POLICY + "  mode: warn\n", env="staging")
    result = setup.propose()
    assert result.status == "proposed"
    (warning,) = result.warnings
    assert warning.startswith(f"{MODEL} v1: provenance signature check failed: the attestation")
    assert warning.endswith("staging's provenance policy only warns (mode: warn), so it is "
                            "proposed anyway")  # fmt: skip
    assert setup.outcome_tag().startswith("warned: the attestation is unsigned")
    (pull,) = setup.forge.pulls.values()
    assert "- **Provenance:** ⚠️ signature check failed: the attestation is unsigned" in pull.body


def test_without_a_policy_nothing_is_checked_and_the_card_says_so() -> None:
    setup = Setup(None, policy="")
    result = setup.propose()
    assert (result.status, result.provenance) == ("proposed", None)
    (pull,) = setup.forge.pulls.values()
    assert "- **Provenance:** not checked (production requires no provenance)" in pull.body
    assert "sluice.provenance.production" not in setup.registry.resolve(MODEL, version=1).tags


def test_a_trusted_key_missing_from_the_default_branch_is_named() -> None:
    setup = Setup(_envelope(), policy=POLICY.replace("keys/ci.pub", "keys/gone.pub"))
    with pytest.raises(ConfigError, match=r"trustedKeys names keys/gone.pub, which is not on main"):
        setup.propose()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("provenance: {required: true}", "provenance.required needs at least one trustedKeys"),
        ("provenance: {trustedKeys: [/etc/key.pub]}", "must be a path inside the GitOps"),
        ("provenance: {trustedKeys: [k.pub], mode: audit}", "mode"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_when_read(policy: str, message: str) -> None:
    text = manifest_files(MODEL)[CONFIG.format(env="production")] + policy + "\n"
    with pytest.raises(ConfigError, match=message):
        parse_environment(text, source="sluice.yaml", environment="production")


def test_required_false_checks_nothing() -> None:
    text = manifest_files(MODEL)[CONFIG.format(env="production")] + "provenance: {required: false}"
    config = parse_environment(text, source="sluice.yaml", environment="production")
    assert config.provenance is not None
    assert config.provenance_check is None


def test_the_environment_schema_documents_the_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """`sluice config schema environment` shows provenance and each field's description."""
    assert main(["config", "schema", "environment"]) == 0
    schema = json.loads(capsys.readouterr().out)
    policy = schema["$defs"]["ProvenancePolicy"]["properties"]
    assert set(policy) == {"required", "trustedKeys", "builders", "mode"}
    assert all(field.get("description") for field in policy.values())
    assert policy["mode"]["enum"] == ["enforce", "warn"]
    assert "Unset: no check" in schema["properties"]["provenance"]["description"]


def test_the_shipped_production_overlay_parses_with_its_commented_policy() -> None:
    text = manifest_files(MODEL)[CONFIG.format(env="production")]
    assert "# provenance:\n#   trustedKeys: [keys/production.pub]" in text
    config = parse_environment(text, source="sluice.yaml", environment="production")
    assert config.provenance is None


class _UnaskedTarget:
    """A target that cannot be asked now: the lineage's revision link says so, the rest of the
    facts are read all the same."""

    def observe(self, environment: str, service: str) -> Any:
        raise TransientError(f"no cluster for {environment}/{service} in this test")


def test_lineage_trusts_what_the_environments_policy_trusts() -> None:
    """`sluice lineage` checks the attestation as the environment's proposals are checked: with
    the policy's trusted keys (beside any --key) and only its builders."""
    setup = Setup(_envelope())
    facts = read_lineage_facts(
        workspace=setup.workspace, registry=setup.registry, attestations=setup.attestations,
        target=cast(Target, _UnaskedTarget()), environment="production", model=MODEL,
    )  # fmt: skip
    assert [key.keyid for key in facts.trusted_keys] == [load_public_key(CI_PUBLIC, "ci.pub").keyid]
    assert list(facts.builders) == ["https://github.com/acme/models/actions/runs/*"]
    assert "no cluster for production" in str(facts.served)
    unpolicied = read_lineage_facts(
        workspace=Setup(_envelope(), policy="").workspace, registry=setup.registry,
        attestations=setup.attestations, target=cast(Target, _UnaskedTarget()),
        environment="production", model=MODEL,
    )  # fmt: skip
    assert (list(unpolicied.trusted_keys), list(unpolicied.builders)) == ([], [])
