"""``promotion:``: what a version must have earned upstream before it is proposed here.

A production environment's ``sluice.yaml`` names the environment(s) a version comes from, the
evidence each of them must hold for it (a promotion after canary steps, a soak at 100 % for a
while, a shadow verdict, provenance from CI) and whether a person must approve the pull
request. Absent, an environment takes any version, as before. The evidence itself is recorded
and verified by :mod:`controller.evidence.statement` and :mod:`controller.evidence.verify`;
:mod:`controller.evidence.evaluate` holds a version's verified evidence to this policy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ApprovalRequirement",
    "EvidenceRequirement",
    "PromotionPolicy",
    "ShadowRequirement",
    "duration_text_seconds",
    "duration_words",
]

ShadowRequirement = Literal["always", "if-run", "never"]
_DURATION = re.compile(r"^([0-9]+[smhd])+$")
_PART = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_text_seconds(text: str) -> int:
    """``24h``, ``90m``, ``1d12h`` in seconds (the text is checked by the policy first)."""
    return sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))


def duration_words(seconds: float) -> str:
    """``6h``, ``23h59m``, ``1d12h``, ``45s``: a time served in the policy's units, the two
    largest (every line that says how long a soak ran writes it so)."""
    whole = max(0, int(seconds))
    parts = []
    for unit, size in sorted(_SECONDS.items(), key=lambda item: -item[1]):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0s"


class EvidenceRequirement(BaseModel):
    """The evidence every upstream environment must hold for the version."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    canary: bool = Field(
        default=True,
        description="A signed canary record: the version was promoted there after every gate "
        "passed at every step.",
    )
    soak: str | None = Field(
        default=None,
        description="How long the version must have served 100 % there without a drift "
        "alert, a KPI regression or an error-budget burn, as 30m, 24h or 1d12h (s, m, h, d). "
        "Unset: no soak is required.",
        examples=["24h"],
    )
    shadow: ShadowRequirement = Field(
        default="if-run",
        description="A signed passing shadow verdict: always; if-run (only when the version "
        "had a shadow phase there); never.",
    )
    provenance: bool = Field(
        default=False,
        description="The version's provenance attestation (from CI) must verify against this "
        "environment's provenance policy.",
    )

    @field_validator("soak")
    @classmethod
    def _soak_is_a_duration(cls, value: str | None) -> str | None:
        if value is not None and (not _DURATION.match(value) or not duration_text_seconds(value)):
            raise ValueError(
                f"soak {value!r} is not a duration; write a number and a unit (s, m, h, d), "
                "e.g. 24h or 1d12h"
            )
        return value

    @property
    def soak_seconds(self) -> int | None:
        """The soak required, in seconds; None when none is."""
        return duration_text_seconds(self.soak) if self.soak is not None else None


class ApprovalRequirement(BaseModel):
    """Whether a person must approve the production pull request."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    required: bool = Field(
        default=False,
        description="A signed approval record: a reviewer other than Sluice approved the "
        "pull request on the forge before the version may roll out here.",
    )


class PromotionPolicy(BaseModel):
    """``promotion:`` of an environment's ``sluice.yaml``: what a version must have earned
    upstream (signed evidence attestations) before it is proposed here."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    upstream: tuple[str, ...] = Field(
        alias="from",
        min_length=1,
        description="The environment(s) a version comes from, e.g. [staging]; each must hold "
        "the required evidence, and none may have quarantined or superseded the version.",
    )
    require: EvidenceRequirement = Field(
        default_factory=EvidenceRequirement,
        description="The evidence required from each upstream environment.",
    )
    approval: ApprovalRequirement = Field(
        default_factory=ApprovalRequirement,
        description="Whether a person must approve the pull request here.",
    )
    auto_propose: bool = Field(
        default=True,
        alias="autoPropose",
        description="Open the pull request here by itself once the evidence is complete. "
        "false: only `sluice propose` by hand, which still refuses without the evidence "
        "unless --force with a reason (recorded as an override attestation).",
    )

    @field_validator("upstream")
    @classmethod
    def _upstream_are_distinct_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name.strip() for name in value) or len(set(value)) != len(value):
            raise ValueError(
                f"from {list(value)} must list distinct environment names, e.g. [staging]"
            )
        return value


class EvidenceKeys(BaseModel):
    """``evidence:`` of an environment's ``sluice.yaml``: whose signature makes a piece of
    evidence recorded in this environment (canary, shadow, soak, approval) count."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    controller_keys: tuple[str, ...] = Field(
        alias="controllerKeys",
        min_length=1,
        description="Public keys (paths in the GitOps repository, from its root, read from "
        "the default branch) of the controller(s) that run this environment's rollouts and "
        "sign its evidence with SLUICE_EVIDENCE_KEY; `sluice provenance keygen` writes a "
        "keypair. Evidence of this environment signed by any other key does not count.",
        examples=[["keys/staging-controller.pub"]],
    )

    @field_validator("controller_keys")
    @classmethod
    def _keys_are_in_the_repository(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(
                    f"controllerKeys entry {path!r} must be a path inside the GitOps "
                    "repository, from its root (e.g. keys/staging-controller.pub)"
                )
        return value
