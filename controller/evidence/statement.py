"""The evidence statement: one decisive event of a rollout as an in-toto Statement v1.

Its shape, for one piece of evidence::

    _type          https://in-toto.io/Statement/v1
    subject        the version's artifact files, {name: "model.pkl", digest: {sha256}}, the
                   same subjects as its provenance, and its provenance envelope
                   ({name: "attestation:provenance.intoto.jsonl", digest: {sha256}}) if any
    predicateType  https://sluice.dev/evidence/v1
    predicate      kind (canary | shadow | soak | approval | override), environment, model,
                   version, at, controller {id, sluiceVersion}, and the body named by kind

``evidence-predicate.schema.json`` beside this module is the predicate's JSON Schema; every
predicate built here is checked against it (and the statement with in-toto-attestation's own
validation) before it is returned, so a verifier without Sluice can hold a logged envelope to
the same contract. The body builders take what the rollout knows when the event happens (the
gates' :class:`~controller.analysis_types.GateResult` values, the
:class:`~controller.rollout.record.AnalysisRecord` of the last step) or plain numbers.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Literal, get_args

from controller import __version__
from controller.provenance.signing import envelope_digest
from controller.provenance.statement import (
    STATEMENT_TYPE,
    statement_subjects,
    validate_statement,
)

if TYPE_CHECKING:
    from controller.analysis_types import GateResult
    from controller.rollout.record import AnalysisRecord

__all__ = [
    "EVIDENCE_DIR",
    "KINDS",
    "PREDICATE_TYPE",
    "PROVENANCE_SUBJECT",
    "SCHEMA_FILE",
    "TAG_PREFIX",
    "EvidenceKind",
    "SoakQuery",
    "approval_body",
    "build_evidence",
    "canary_body",
    "evidence_artifact",
    "evidence_tag",
    "format_instant",
    "override_body",
    "predicate_problem",
    "predicate_schema",
    "shadow_body",
    "soak_body",
    "version_subjects",
]

PREDICATE_TYPE = "https://sluice.dev/evidence/v1"
#: The JSON Schema of the predicate, packaged beside this module.
SCHEMA_FILE = "evidence-predicate.schema.json"
#: The subject naming the version's provenance envelope (its line's sha256).
PROVENANCE_SUBJECT = "attestation:provenance.intoto.jsonl"

#: Where a version's run keeps its evidence envelopes: ``evidence/ENV/KIND.intoto.jsonl``.
EVIDENCE_DIR = "evidence"
#: The version tags naming each envelope's digest: ``sluice.evidence.ENV.KIND``.
TAG_PREFIX = "sluice.evidence."

EvidenceKind = Literal["canary", "shadow", "soak", "approval", "override"]
KINDS: tuple[EvidenceKind, ...] = get_args(EvidenceKind)


def evidence_tag(environment: str, kind: str) -> str:
    """The version tag holding the digest of ``environment``'s ``kind`` envelope."""
    return f"{TAG_PREFIX}{environment}.{kind}"


def evidence_artifact(environment: str, kind: str) -> str:
    """The run artifact holding ``environment``'s ``kind`` envelope (one JSON line); a later
    record of the same kind in the same environment replaces it, and its tag."""
    return f"{EVIDENCE_DIR}/{environment}/{kind}.intoto.jsonl"


@dataclass(frozen=True)
class SoakQuery:
    """One query the soak watched (from the policy), its value over the window, and whether
    that value is within the policy's bound."""

    name: str
    query: str
    value: float | None
    ok: bool


def format_instant(epoch_seconds: float) -> str:
    """``2026-12-06T18:00:00Z``: an instant as the predicate writes it."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_subjects(artifact: Mapping[str, str], provenance: bytes | None) -> dict[str, str]:
    """The subjects a version's evidence binds to: each artifact file's sha256 by path (as
    :meth:`~controller.ports.AttestationStore.artifact_digests` reads them) and, when the
    version has one, its provenance envelope line's sha256."""
    subjects = dict(artifact)
    if provenance is not None:
        subjects[PROVENANCE_SUBJECT] = envelope_digest(provenance).removeprefix("sha256:")
    return subjects


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: an unmeasured value is null."""
    return value if value is not None and math.isfinite(value) else None


def _gates(results: Sequence[GateResult]) -> list[dict[str, Any]]:
    return [
        {
            "name": result.gate,
            "verdict": str(result.verdict),
            "summary": result.summary,
            "values": {str(k): _number(float(v)) for k, v in result.values.items()},
        }
        for result in results
    ]


def canary_body(
    *,
    steps: Sequence[int],
    promoted_from: int,
    results: Sequence[GateResult],
    record: AnalysisRecord | None,
) -> dict[str, Any]:
    """Promoted after ``steps`` (the policy's canaryTrafficPercent steps), from
    ``promoted_from`` percent, on the last analysis's ``results`` (``Promote.results``);
    ``record`` is that step's analysis record (its looks), None when none was kept."""
    return {
        "steps": [int(step) for step in steps],
        "promotedFrom": int(promoted_from),
        "looks": record.looks if record is not None else 0,
        "gates": _gates(results),
    }


def shadow_body(
    *,
    verdict: str,
    reason: str,
    samples: int,
    labelled: int,
    results: Sequence[GateResult],
) -> dict[str, Any]:
    """The shadow judge's verdict (a :class:`~controller.shadow.judge.ShadowJudgement`'s
    fields): its reason, sample sizes and each check's statistics."""
    return {
        "verdict": str(verdict),
        "reason": reason,
        "samples": int(samples),
        "labelled": int(labelled),
        "checks": _gates(results),
    }


def soak_body(
    *, start: float, end: float, queries: Sequence[SoakQuery], alerts: Sequence[str]
) -> dict[str, Any]:
    """Served at 100 % from ``start`` to ``end`` (epoch seconds), with the policy's queries'
    values over that window and the alerts that fired in it."""
    return {
        "start": format_instant(start),
        "end": format_instant(end),
        "durationSeconds": max(0.0, float(end - start)),
        "queries": [
            {"name": q.name, "query": q.query, "value": _number(q.value), "ok": q.ok}
            for q in queries
        ],
        "alerts": list(alerts),
    }


def approval_body(
    *, approvers: Sequence[str], number: int, url: str, approved_at: float
) -> dict[str, Any]:
    """Who approved pull request ``number`` (the forge's logins) and when (epoch seconds)."""
    return {
        "approvers": sorted(set(approvers)),
        "pullRequest": {"number": int(number), "url": url},
        "approvedAt": format_instant(approved_at),
    }


def override_body(*, by: str, reason: str, missing: Sequence[str]) -> dict[str, Any]:
    """A proposal forced by hand: who, why, and the missing evidence it went past."""
    return {"by": by, "reason": reason, "missing": list(missing)}


@functools.cache
def predicate_schema() -> dict[str, Any]:
    """The predicate's JSON Schema (``evidence-predicate.schema.json``)."""
    text = files("controller.evidence").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def predicate_problem(predicate: Any) -> str | None:
    """Why ``predicate`` does not meet the schema, in one line; None when it does."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(predicate_schema()).iter_errors(predicate))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the predicate"
    message = (
        "holds another kind's body beside its own (one body per predicate)"
        if error.validator == "not"
        else error.message
    )
    return f"{where}: {message}"[:300]


def build_evidence(
    *,
    kind: EvidenceKind,
    body: Mapping[str, Any],
    environment: str,
    model: str,
    version: int,
    subjects: Mapping[str, str],
    controller: str,
    now: float,
) -> dict[str, Any]:
    """The statement for one piece of evidence (see the module doc for its shape).

    ``body`` is the kind's body (:func:`canary_body` and its siblings); ``subjects`` are
    :func:`version_subjects`; ``controller`` names who records it. A ValueError when the
    predicate does not meet its schema or the statement is not a valid in-toto Statement.
    """
    predicate: dict[str, Any] = {
        "kind": kind,
        "environment": environment,
        "model": model,
        "version": version,
        "at": format_instant(now),
        "controller": {"id": controller, "sluiceVersion": __version__},
        kind: dict(body),
    }
    problem = predicate_problem(predicate)
    if problem is not None:
        raise ValueError(f"{kind} evidence does not meet {SCHEMA_FILE}: {problem}")
    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": statement_subjects(subjects),
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }
    validate_statement(statement)
    return statement
