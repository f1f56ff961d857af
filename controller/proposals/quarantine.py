"""Quarantine as a lifecycle: which versions are held back, and lifting one, with a reason.

A rollout quarantines a version only when its gates judged it worse (a failed check with data
behind it): the tag ``sluice.quarantined`` on the version, with the environment and time.
Proposals refuse a quarantined version, and ``--force`` does not override that, because the
rollout would roll it straight back: a team that has looked into the failure and wants the
version again lifts the quarantine, which records who, why and when, and the version then
rolls out like any other. An aborted rollout (no verdict on the model) quarantines nothing.

Lifting writes the record first and removes the quarantine last, so a crash in between leaves
the version quarantined and a second ``lift`` finishes the job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.domain import QUARANTINE_TAG
from controller.errors import InputError

__all__ = [
    "LIFTED_TAG",
    "QuarantineRegistry",
    "QuarantinedVersion",
    "lift",
    "quarantined_versions",
]

#: The last lift of a version's quarantine: the reason, with ``.by``, ``.at`` and ``.was``.
LIFTED_TAG = "sluice.quarantine.lifted"
_QUARANTINE_DETAILS = (f"{QUARANTINE_TAG}.environment", f"{QUARANTINE_TAG}.at")
_REASON_LIMIT = 500


class VersionTags(Protocol):
    """One version as the registry lists it: its number and tags."""

    @property
    def version(self) -> int: ...

    @property
    def tags(self) -> Mapping[str, str]: ...


class QuarantineRegistry(Protocol):
    """What the quarantine needs of the registry."""

    def model_names(self) -> list[str]:
        """Every registered model's name."""
        ...

    def versions(self, name: str) -> Sequence[VersionTags]:
        """Every version of a model, oldest first."""
        ...

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one version."""
        ...

    def delete_version_tags(self, name: str, version: int, keys: tuple[str, ...]) -> None:
        """Remove tags from one version (absent ones are ignored)."""
        ...


@dataclass(frozen=True)
class QuarantinedVersion:
    """A version proposals refuse, and why."""

    model: str
    version: int
    reason: str
    environment: str
    since: str

    def to_dict(self) -> dict[str, object]:
        """JSON-safe, for ``--json``."""
        return {
            "model": self.model,
            "version": self.version,
            "reason": self.reason,
            "environment": self.environment,
            "since": self.since,
        }


def quarantined_versions(
    registry: QuarantineRegistry, model: str | None = None
) -> list[QuarantinedVersion]:
    """The quarantined versions of ``model`` (of every model when None), by model and version."""
    names = [model] if model is not None else sorted(registry.model_names())
    found = []
    for name in names:
        for version in registry.versions(name):
            tags = version.tags
            if QUARANTINE_TAG in tags:
                found.append(
                    QuarantinedVersion(
                        model=name,
                        version=version.version,
                        reason=tags[QUARANTINE_TAG],
                        environment=tags.get(f"{QUARANTINE_TAG}.environment", ""),
                        since=tags.get(f"{QUARANTINE_TAG}.at", ""),
                    )
                )
    return found


def lift(
    registry: QuarantineRegistry,
    model: str,
    version: int,
    *,
    reason: str,
    by: str,
    now: dt.datetime,
) -> QuarantinedVersion:
    """Lift the quarantine of ``model`` v``version``; returns what was lifted.

    :class:`InputError` without a reason, or when the version is not quarantined (naming the
    ones that are, so a typo in the version number is obvious).
    """
    reason = " ".join(reason.split())
    if not reason:
        raise InputError(
            "--reason must say why the quarantine is lifted (it is recorded on the version)"
        )
    held = {q.version: q for q in quarantined_versions(registry, model)}
    entry = held.get(version)
    if entry is None:
        known = ", ".join(f"v{v}" for v in sorted(held)) or "none"
        raise InputError(
            f"{model} v{version} is not quarantined (quarantined versions of {model}: {known}); "
            f"see `sluice quarantine list {model}`"
        )
    registry.set_version_tags(
        model,
        version,
        {
            LIFTED_TAG: reason[:_REASON_LIMIT],
            f"{LIFTED_TAG}.by": by[:200],
            f"{LIFTED_TAG}.at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
            f"{LIFTED_TAG}.was": entry.reason[:_REASON_LIMIT],
        },
    )
    registry.delete_version_tags(model, version, (QUARANTINE_TAG, *_QUARANTINE_DETAILS))
    return entry
