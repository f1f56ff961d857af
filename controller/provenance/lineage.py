"""Lineage: from what serves in an environment back to the data, each link checked.

``sluice lineage`` walks one release's chain and checks every link against its neighbour:

1. ``revision``: the revision the target serves runs the storageUri the pin names;
2. ``pin``: the environment's pin file names a version and its storageUri, set by a commit;
3. ``version``: the registry has that version, and its artifact maps to the pinned storageUri
   (and it came from the run the pin names);
4. ``run``: the training run that registered it, as the attestation records it;
5. ``code``: the training commit (the version's tag and the attestation agree);
6. ``dataset``: one per dataset trained or validated on: its canonical digest and DVC path
   (the version's tag and the attestation agree);
7. ``attestation``: the DSSE envelope, the key that signed it (checked against the trusted
   keys when any are given) and the artifact's files as served now against its subjects.

Each link is verified (True), broken (False) or not checked (None: no trusted key was given,
or the attestation that would vouch for it failed, which its own link reports). Everything
comes in as plain values (:class:`LineageFacts`); :func:`build_lineage` is pure, and
:func:`summary_line` is the one line ``make demo`` prints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError
from securesystemslib.signer import Key

from controller.domain import QUARANTINE_TAG, ModelVersion
from controller.provenance.signing import PAYLOAD_TYPE
from controller.provenance.verify import verify_attestation

__all__ = [
    "Lineage",
    "LineageFacts",
    "Link",
    "LinkKind",
    "PinFacts",
    "ServedRevision",
    "build_lineage",
    "summary_line",
]

LinkKind = Literal["revision", "pin", "version", "run", "code", "dataset", "attestation"]

#: The version tags training writes (:func:`controller.training.record_provenance`).
PROVENANCE_TAG = "sluice.provenance"
DATASET_TAG = "sluice.dataset_digest"
COMMIT_TAG = "sluice.training_commit"


@dataclass(frozen=True)
class Link:
    """One link of the chain: what it is, its id, whether it holds, and why, in one line."""

    kind: LinkKind
    id: str
    verified: bool | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "verified": self.verified, "detail": self.detail}


@dataclass(frozen=True)
class Lineage:
    """The chain of one release, newest link (what serves) first."""

    model: str
    environment: str
    version: int | None
    links: tuple[Link, ...]

    @property
    def broken(self) -> Link | None:
        """The first link that does not hold (None: none is broken)."""
        return next((link for link in self.links if link.verified is False), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "version": self.version,
            "links": [link.to_json() for link in self.links],
        }


@dataclass(frozen=True)
class ServedRevision:
    """A revision of the InferenceService as the target runs it: its share of the traffic
    and the storageUri it loaded (None when the target does not say)."""

    name: str
    percent: int
    storage_uri: str | None


@dataclass(frozen=True)
class PinFacts:
    """What the environment's pin file says, and the commit that last changed it."""

    path: str
    branch: str
    commit: str | None
    version: int | None
    storage_uri: str | None
    run_id: str | None


@dataclass(frozen=True)
class LineageFacts:
    """Everything the chain is checked from, read by the caller.

    ``served`` is the target's revisions, or the one-line reason it could not be asked;
    ``mapped_uri`` is the version's artifact URI as the environment's storage rules turn it
    into a storageUri (None: not registered); ``served_digests`` the sha256 of each file the
    registry serves for the version now.
    """

    model: str
    environment: str
    served: Sequence[ServedRevision] | str
    synced_commit: str | None
    pin: PinFacts
    version: ModelVersion | None
    mapped_uri: str | None
    attestation: bytes | None
    served_digests: Mapping[str, str] = field(default_factory=dict)
    trusted_keys: Sequence[Key] = ()
    #: The builders the environment's provenance policy accepts (none: any builder).
    builders: Sequence[str] = ()


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


def _revision_link(facts: LineageFacts) -> Link:
    pinned = facts.pin.storage_uri
    if isinstance(facts.served, str):
        return Link("revision", "?", False, f"the target could not be asked: {facts.served}")
    serving = [r for r in facts.served if r.percent > 0]
    if not serving:
        return Link("revision", "-", False, "no revision of the InferenceService takes traffic")
    synced = f"; synced commit {_short(facts.synced_commit)}" if facts.synced_commit else ""
    match = next((r for r in serving if r.storage_uri == pinned), None)
    if match is not None:
        others = [r for r in serving if r is not match]
        rest = "".join(f", {r.name} {r.percent} %" for r in others)
        detail = f"serves {match.percent} % from {match.storage_uri}{rest}{synced}"
        return Link("revision", match.name, True, detail)
    known = [r for r in serving if r.storage_uri is not None]
    if not known:
        names = ", ".join(f"{r.name} {r.percent} %" for r in serving)
        return Link(
            "revision", serving[0].name, None, f"{names}; the target does not say its storageUri"
        )
    served = ", ".join(f"{r.name} {r.percent} % from {r.storage_uri}" for r in known)
    return Link(
        "revision",
        known[0].name,
        False,
        f"storageUri mismatch: the target serves {served}, the pin names {pinned}",
    )


def _pin_link(facts: LineageFacts) -> Link:
    pin = facts.pin
    where = f"{pin.path}@{pin.branch}"
    if pin.version is None or not pin.storage_uri:
        return Link("pin", _short(pin.commit), False, f"{where} pins no version yet")
    detail = f"{where} names v{pin.version} ({pin.storage_uri}), set by {_short(pin.commit)}"
    return Link("pin", _short(pin.commit), True, detail)


def _version_link(facts: LineageFacts) -> Link:
    pin, version = facts.pin, facts.version
    name = f"v{pin.version}" if pin.version is not None else "?"
    if version is None:
        return Link("version", name, False, f"{facts.model} {name} is not in the registry")
    if facts.mapped_uri != pin.storage_uri:
        return Link(
            "version",
            name,
            False,
            f"the registry's artifact maps to {facts.mapped_uri}, not the pinned {pin.storage_uri}",
        )
    if pin.run_id and version.run_id != pin.run_id:
        return Link(
            "version",
            name,
            False,
            f"registered by run {version.run_id}, the pin names {pin.run_id}",
        )
    detail = f"its artifact {version.artifact_uri} is the pinned storageUri"
    if version.quarantined:
        detail += f"; quarantined: {version.tags.get(QUARANTINE_TAG)}"
    return Link("version", name, True, detail)


@dataclass(frozen=True)
class _Attested:
    """The attestation's link, and the statement it vouches for (empty: none readable)."""

    link: Link
    statement: Mapping[str, Any]
    #: True: a trusted key signed it and the files match; None: not checked; False: failed.
    vouches: bool | None


def _parse(attestation: bytes) -> tuple[Envelope, dict[str, Any]] | str:
    lines = [line for line in attestation.splitlines() if line.strip()]
    try:
        envelope = Envelope.from_dict(json.loads(lines[0])) if len(lines) == 1 else None
        statement = json.loads(envelope.payload) if envelope is not None else None
    except (ValueError, KeyError, TypeError, FormatError):
        envelope = statement = None
    if envelope is None or not isinstance(statement, dict):
        return "the attestation is not one DSSE envelope of a JSON statement"
    if envelope.payload_type != PAYLOAD_TYPE:
        return f"the envelope's payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}"
    return envelope, statement


def _subjects_match(statement: Mapping[str, Any], served: Mapping[str, str]) -> str | None:
    signed = {
        str(s.get("name")): str((s.get("digest") or {}).get("sha256"))
        for s in statement.get("subject") or []
    }
    for name in sorted(set(signed) | set(served)):
        if signed.get(name) != served.get(name):
            return (
                f"{name} differs from the attested artifact "
                f"(served {_short(served.get(name))}, signed {_short(signed.get(name))})"
            )
    return None


def _attestation(facts: LineageFacts) -> _Attested:
    if facts.attestation is None:
        link = Link("attestation", "-", False, "the version has no provenance.intoto.jsonl")
        return _Attested(link, {}, False)
    digest = f"sha256:{hashlib.sha256(facts.attestation).hexdigest()}"
    tag = (facts.version.tags if facts.version else {}).get(PROVENANCE_TAG)
    parsed = _parse(facts.attestation)
    if isinstance(parsed, str):
        return _Attested(Link("attestation", digest, False, parsed), {}, False)
    envelope, statement = parsed
    if tag not in (None, "unsigned", digest):
        detail = f"the version's tag {PROVENANCE_TAG} is {tag}: the run's envelope was replaced"
        return _Attested(Link("attestation", digest, False, detail), statement, False)
    if facts.trusted_keys:
        result = verify_attestation(
            facts.attestation,
            trusted_keys=facts.trusted_keys,
            builders=facts.builders,
            served=facts.served_digests,
        )
        if not result.verified:
            detail = f"{result.failed} check failed: {result.reason}"
            return _Attested(Link("attestation", digest, False, detail), statement, False)
        detail = (
            f"signed by trusted key {_short(result.keyid)}…, {len(facts.served_digests)} files "
            f"match the served artifact, built by {result.builder}"
        )
        return _Attested(Link("attestation", digest, True, detail), statement, True)
    problem = _subjects_match(statement, facts.served_digests)
    if problem is not None:
        return _Attested(Link("attestation", digest, False, problem), statement, False)
    signers = ", ".join(f"{keyid[:12]}…" for keyid in sorted(envelope.signatures))
    signed = (
        f"signed by key {signers} (not checked: no trusted key given)" if signers else "unsigned"
    )
    detail = f"{signed}; {len(facts.served_digests)} files match the served artifact"
    return _Attested(Link("attestation", digest, None, detail), statement, None)


def _dependencies(statement: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    definition = (statement.get("predicate") or {}).get("buildDefinition") or {}
    return [d for d in definition.get("resolvedDependencies") or [] if isinstance(d, Mapping)]


def _vouched(agree: bool, vouches: bool | None) -> bool | None:
    """A recorded fact holds when tag and attestation agree and the attestation vouches for
    it; when the attestation itself failed, its own link says so and this one is unchecked."""
    if not agree:
        return False
    return None if vouches is False else vouches


def _run_link(facts: LineageFacts, attested: _Attested) -> Link:
    run_id = facts.version.run_id if facts.version else None
    internal = ((attested.statement.get("predicate") or {}).get("buildDefinition") or {}).get(
        "internalParameters"
    ) or {}
    recorded = internal.get("mlflowRunId")
    if not run_id:
        return Link("run", "-", False, "the version names no run")
    if recorded is None:
        return Link("run", run_id, None, "registered it; no attestation names it")
    agree = recorded == run_id
    detail = (
        "registered it; the attestation names it" if agree else f"the attestation names {recorded}"
    )
    return Link("run", run_id, _vouched(agree, attested.vouches), detail)


def _code_link(facts: LineageFacts, attested: _Attested) -> Link:
    tag = (facts.version.tags if facts.version else {}).get(COMMIT_TAG)
    code = next(
        (d for d in _dependencies(attested.statement) if d.get("name") == "training code"), None
    )
    recorded = str((code.get("digest") or {}).get("gitCommit")) if code else None
    commit = recorded or tag
    if commit is None:
        return Link("code", "-", False, "no training commit recorded (tag or attestation)")
    agree = tag is None or recorded is None or tag == recorded
    uri = str(code.get("uri")) if code else f"tag {COMMIT_TAG}"
    dirty = " (dirty working tree)" if code and (code.get("annotations") or {}).get("dirty") else ""
    detail = f"{uri}{dirty}" if agree else f"the tag says {tag}, the attestation {recorded}"
    verified = _vouched(agree, attested.vouches) if recorded is not None else None
    return Link("code", _short(commit), verified, detail)


def _tagged_datasets(version: ModelVersion | None) -> dict[str, str]:
    text = (version.tags if version else {}).get(DATASET_TAG) or ""
    pairs = (item.partition("=") for item in text.split(",") if "=" in item)
    return {name: digest for name, _, digest in pairs}


def _dataset_links(facts: LineageFacts, attested: _Attested) -> list[Link]:
    tagged = _tagged_datasets(facts.version)
    links: list[Link] = []
    for dependency in _dependencies(attested.statement):
        name = str(dependency.get("name") or "")
        if not name.startswith("dataset:"):
            continue
        role = name.removeprefix("dataset:")
        digest = f"sha256:{(dependency.get('digest') or {}).get('sha256')}"
        notes = dependency.get("annotations") or {}
        dvc = notes.get("dvc") or {}
        where = f", DVC {dvc.get('path')} (md5 {str(dvc.get('md5'))[:12]}…)" if dvc else ""
        agree = tagged.get(role, digest) == digest
        detail = f"{role}: {notes.get('rows', '?')} rows{where}"
        if not agree:
            detail = f"{role}: the tag says {tagged[role]}, the attestation {digest}"
        links.append(Link("dataset", digest, _vouched(agree, attested.vouches), detail))
    if not links:
        for role, digest in tagged.items():  # no readable attestation: the tag alone
            links.append(Link("dataset", digest, None, f"{role}: from the tag only"))
    if not links:
        links.append(Link("dataset", "-", False, "no dataset digest recorded (tag or attestation)"))
    return links


def build_lineage(facts: LineageFacts) -> Lineage:
    """The release's chain, each link checked against its neighbours (see the module doc)."""
    attested = _attestation(facts)
    links = [
        _revision_link(facts),
        _pin_link(facts),
        _version_link(facts),
        _run_link(facts, attested),
        _code_link(facts, attested),
        *_dataset_links(facts, attested),
        attested.link,
    ]
    return Lineage(facts.model, facts.environment, facts.pin.version, tuple(links))


def summary_line(lineage: Lineage) -> str:
    """One line: ``fraud-detector v2 in local: revision … ← pin … ← v2 ← run … ← code … ←
    data … ← signed by … ✓`` (✗ and the first broken link when one is)."""
    parts: list[str] = []
    data = [
        f"{link.id[:19]}…" if link.id.startswith("sha256:") else "?"
        for link in lineage.links
        if link.kind == "dataset"
    ]
    for link in lineage.links:
        if link.kind == "version":
            parts.append(link.id)
        elif link.kind == "dataset":
            if data:
                parts.append(f"data {', '.join(data)}")
                data = []
        elif link.kind == "attestation":
            parts.append(_signer(link))
        else:
            short = link.id if link.kind == "revision" else link.id[:12]
            parts.append(f"{link.kind} {short}")
    version = f"v{lineage.version}" if lineage.version is not None else "(nothing pinned)"
    head = f"{lineage.model} {version} in {lineage.environment}: " + " ← ".join(parts)
    broken = lineage.broken
    if broken is None:
        return f"{head} ✓"
    return f"{head} ✗ ({broken.kind}: {broken.detail})"


def _signer(link: Link) -> str:
    if link.detail.startswith("unsigned"):
        return "unsigned"
    if link.detail.startswith("signed by"):
        return link.detail.split(" (", 1)[0].split(",", 1)[0].replace("trusted key ", "key ")
    return "attestation"
