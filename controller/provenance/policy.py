"""An environment's provenance policy applied to one version: the check, its tag, its words.

``provenance:`` in an environment's ``sluice.yaml`` names the public keys it trusts (files in
the GitOps repository, read from its default branch, so a proposal branch cannot bring its own
key) and the builders it accepts. A proposal checks a version before it writes anything and
the rollout checks it again at each step (:mod:`controller.provenance.verify` does the
checking). The outcome is recorded on the version as ``sluice.provenance.ENV`` (``verified:``,
``refused:`` or ``warned:`` and the reason), so the registry shows why a version never reached
an environment. The version's own provenance tags, written by training, become the pin's
annotations (:data:`PIN_ANNOTATIONS`): Argo CD shows them beside the resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from controller.errors import ConfigError
from controller.provenance.signing import load_public_key
from controller.provenance.verify import Verification, verify_version

if TYPE_CHECKING:
    from securesystemslib.signer import Key

    from controller.manifests.environment import ProvenancePolicy
    from controller.ports import AttestationStore, ReleaseRepository

__all__ = [
    "PIN_ANNOTATIONS",
    "PolicyOutcome",
    "check_version",
    "outcome_tag",
    "pin_annotations",
    "read_trusted_keys",
]

#: The version's tags (written by training) the pin carries, by annotation.
PIN_ANNOTATIONS = {
    "sluice.dev/provenance": "sluice.provenance",
    "sluice.dev/dataset-digest": "sluice.dataset_digest",
    "sluice.dev/training-commit": "sluice.training_commit",
}
_TAG_LIMIT = 500


@dataclass(frozen=True)
class PolicyOutcome:
    """A verification under a policy: whether the version may go on, and the words for it."""

    environment: str
    what: str
    verification: Verification
    mode: Literal["enforce", "warn"]

    @property
    def refused(self) -> bool:
        """Failed, and the policy enforces."""
        return not self.verification.verified and self.mode == "enforce"

    @property
    def warned(self) -> bool:
        """Failed, and the policy only warns."""
        return not self.verification.verified and self.mode == "warn"

    def line(self) -> str:
        """One line: what was checked and the outcome (:meth:`Verification.line`)."""
        return self.verification.line(self.what)

    def tag_value(self) -> str:
        """The value of :func:`outcome_tag` on the version."""
        word = "verified" if self.verification.verified else "refused" if self.refused else "warned"
        return f"{word}: {self.verification.reason}"[:_TAG_LIMIT]


def outcome_tag(environment: str) -> str:
    """The version tag that records the last check for ``environment``."""
    return f"sluice.provenance.{environment}"


def read_trusted_keys(
    workspace: ReleaseRepository, policy: ProvenancePolicy, environment: str
) -> list[Key]:
    """The policy's public keys as the remote's default branch holds them; a
    :class:`ConfigError` naming the file when one is missing or is not a public key."""
    default = workspace.default_branch()
    keys: list[Key] = []
    for path in policy.trusted_keys:
        text = workspace.read(default, path)
        if text is None:
            raise ConfigError(
                f"{environment}'s provenance.trustedKeys names {path}, which is not on "
                f"{default}: commit the public key there (`sluice provenance keygen` writes one)"
            )
        keys.append(load_public_key(text.encode("utf-8"), f"{path}@{default}"))
    return keys


def check_version(
    store: AttestationStore,
    policy: ProvenancePolicy,
    keys: list[Key],
    *,
    environment: str,
    model: str,
    version: int,
) -> PolicyOutcome:
    """Verify ``model`` v``version`` as served now against the policy's keys and builders."""
    verification = verify_version(
        store, model, version, trusted_keys=keys, builders=policy.builders
    )
    return PolicyOutcome(environment, f"{model} v{version}", verification, policy.mode)


def pin_annotations(tags: Mapping[str, str]) -> dict[str, str | None]:
    """The pin's provenance annotations from the version's tags (None: remove the annotation,
    for a version training recorded no provenance for)."""
    return {annotation: tags.get(tag) for annotation, tag in PIN_ANNOTATIONS.items()}
