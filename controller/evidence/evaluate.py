"""A version's verified evidence held to an environment's ``promotion:`` policy.

:func:`evaluate` is pure: the checked evidence (:func:`~controller.evidence.verify.
verify_evidence`), what each upstream environment says of the version (quarantined there,
superseded there by a later version, whether it had a shadow phase there) and its provenance
verification come in as values. The verdict is complete, or lists what is missing with one
line each, the words a refused proposal prints::

    canary in staging: none
    soak in staging: 6h of 24h
    staging quarantined v7: error rate 4.1% (max 1%)
    superseded in staging by v8
    shadow in staging: tag check failed: the tag names envelope sha256:…, which is not logged

Every upstream environment in ``from`` must hold each required piece. Any piece of evidence
that fails verification in an environment that matters here refuses the version too, so a
forged or deleted envelope cannot pass unnoticed because it was not required. A verified
``override`` recorded here (``sluice propose --force`` with a reason) lets a version past
missing evidence, never past a quarantine or broken evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.evidence.policy import PromotionPolicy, duration_text_seconds, duration_words
from controller.evidence.verify import EvidenceCheck
from controller.provenance.verify import Verification

__all__ = ["EvidenceVerdict", "Missing", "MissingKind", "UpstreamState", "evaluate"]

MissingKind = Literal[
    "canary", "shadow", "soak", "provenance", "approval", "quarantined", "superseded", "invalid"
]
#: What an override never lifts: the version was judged worse, or its evidence was tampered.
_BLOCKING: frozenset[MissingKind] = frozenset({"quarantined", "invalid"})


@dataclass(frozen=True)
class UpstreamState:
    """What an upstream environment says of the version, read from the registry and Git."""

    environment: str
    #: The quarantine's reason when the version was quarantined there.
    quarantined: str | None = None
    #: A later version promoted there since (it serves instead).
    superseded_by: int | None = None
    #: The version had a shadow phase there (``shadow: if-run`` then requires its verdict).
    shadow_ran: bool = False


@dataclass(frozen=True)
class Missing:
    """One thing the version lacks here, and the line that says so."""

    kind: MissingKind
    environment: str
    reason: str
    #: The piece is there but failed verification (deleted, replaced, forged): no override
    #: lifts that.
    broken: bool = False


@dataclass(frozen=True)
class EvidenceVerdict:
    """Complete, or what is missing; and the override recorded here, if any."""

    missing: tuple[Missing, ...]
    #: One line per requirement met ("canary in staging: verified (…)").
    met: tuple[str, ...] = ()
    override: EvidenceCheck | None = None

    @property
    def complete(self) -> bool:
        """Nothing is missing."""
        return not self.missing

    @property
    def overridable(self) -> bool:
        """An override would let it past: nothing missing is a quarantine or broken evidence."""
        return not any(m.kind in _BLOCKING or m.broken for m in self.missing)

    @property
    def allowed(self) -> bool:
        """Complete, or overridden by hand past nothing an override may not lift."""
        if self.complete:
            return True
        return self.override is not None and self.overridable

    def lines(self) -> list[str]:
        """What is missing, one line each."""
        return [missing.reason for missing in self.missing]


@dataclass
class _Evidence:
    """The checks by (environment, kind); a failed check a requirement names is consumed."""

    checks: Sequence[EvidenceCheck]

    def __post_init__(self) -> None:
        self.consumed: set[int] = set()

    def verified(self, environment: str, kind: str) -> EvidenceCheck | None:
        return next(
            (
                c
                for c in self.checks
                if c.verified and (c.environment, c.kind) == (environment, kind)
            ),
            None,
        )

    def broken(self, environment: str, kind: str) -> EvidenceCheck | None:
        for index, check in enumerate(self.checks):
            if not check.verified and (check.environment, check.kind) == (environment, kind):
                self.consumed.add(index)
                return check
        return None

    def unconsumed_broken(self, environments: Iterable[str]) -> list[EvidenceCheck]:
        wanted = set(environments) | {"?"}
        return [
            check
            for index, check in enumerate(self.checks)
            if not check.verified and index not in self.consumed and check.environment in wanted
        ]


def _absent(evidence: _Evidence, kind: MissingKind, environment: str) -> Missing:
    broken = evidence.broken(environment, kind)
    if broken is not None:
        return Missing(kind, environment, broken.line(), broken=True)
    return Missing(kind, environment, f"{kind} in {environment}: none")


def _body(check: EvidenceCheck, kind: str) -> Mapping[str, Any]:
    body = check.predicate.get(kind, {})
    return body if isinstance(body, Mapping) else {}


def _soak(
    evidence: _Evidence, environment: str, required: int, written: str
) -> tuple[Missing | None, str | None]:
    check = evidence.verified(environment, "soak")
    if check is None:
        return _absent(evidence, "soak", environment), None
    body = _body(check, "soak")
    served = float(body.get("durationSeconds", 0))
    alerts = [str(alert) for alert in body.get("alerts", [])]
    failing = [str(q.get("name")) for q in body.get("queries", []) if not q.get("ok")]
    what = f"soak in {environment}"
    if alerts:
        return Missing(
            "soak", environment, f"{what}: {duration_words(served)} with alert {', '.join(alerts)}"
        ), None
    if failing:
        return Missing(
            "soak",
            environment,
            f"{what}: {duration_words(served)} with {', '.join(failing)} out of bounds",
        ), None
    if served < required:
        return Missing("soak", environment, f"{what}: {duration_words(served)} of {written}"), None
    return None, f"{what}: {duration_words(served)} of {written}, clean"


def _shadow(evidence: _Evidence, environment: str) -> tuple[Missing | None, str | None]:
    check = evidence.verified(environment, "shadow")
    if check is None:
        return _absent(evidence, "shadow", environment), None
    body = _body(check, "shadow")
    if body.get("verdict") != "pass":
        return Missing(
            "shadow",
            environment,
            f"shadow in {environment}: verdict {body.get('verdict')} ({body.get('reason')})",
        ), None
    return None, f"shadow in {environment}: passed on {body.get('samples')} samples"


def _upstream(
    policy: PromotionPolicy, evidence: _Evidence, state: UpstreamState, version: int
) -> tuple[list[Missing], list[str]]:
    env = state.environment
    missing: list[Missing] = []
    met: list[str] = []
    if state.quarantined is not None:
        missing.append(
            Missing("quarantined", env, f"{env} quarantined v{version}: {state.quarantined}")
        )
    if state.superseded_by is not None:
        missing.append(Missing("superseded", env, f"superseded in {env} by v{state.superseded_by}"))
    require = policy.require
    if require.canary:
        canary = evidence.verified(env, "canary")
        if canary is None:
            missing.append(_absent(evidence, "canary", env))
        else:
            met.append(canary.line())
    if require.shadow == "always" or (require.shadow == "if-run" and state.shadow_ran):
        problem, line = _shadow(evidence, env)
        missing.extend([problem] if problem else [])
        met.extend([line] if line else [])
    if require.soak is not None:
        problem, line = _soak(evidence, env, duration_text_seconds(require.soak), require.soak)
        missing.extend([problem] if problem else [])
        met.extend([line] if line else [])
    return missing, met


def evaluate(
    policy: PromotionPolicy,
    checks: Sequence[EvidenceCheck],
    upstream: Sequence[UpstreamState],
    *,
    environment: str,
    version: int,
    provenance: Verification | None = None,
) -> EvidenceVerdict:
    """Hold the version's checked evidence to ``environment``'s promotion policy.

    ``upstream`` is what each environment of ``from`` says of the version (one not given is
    taken as saying nothing against it); ``provenance`` its provenance verification under
    this environment's policy, None when none was run.
    """
    evidence = _Evidence(checks)
    states = {state.environment: state for state in upstream}
    missing: list[Missing] = []
    met: list[str] = []
    for name in policy.upstream:
        found, lines = _upstream(policy, evidence, states.get(name, UpstreamState(name)), version)
        missing.extend(found)
        met.extend(lines)
    if policy.require.provenance:
        if provenance is None:
            missing.append(Missing("provenance", environment, "provenance: not verified"))
        elif not provenance.verified:
            missing.append(
                Missing(
                    "provenance",
                    environment,
                    f"provenance: {provenance.failed} check failed: {provenance.reason}",
                )
            )
        else:
            met.append(f"provenance: verified ({provenance.reason})")
    if policy.approval.required:
        approval = evidence.verified(environment, "approval")
        if approval is None:
            missing.append(_absent(evidence, "approval", environment))
        else:
            approvers = ", ".join(_body(approval, "approval").get("approvers", []))
            met.append(f"approval in {environment}: by {approvers}")
    override = evidence.verified(environment, "override")
    for broken in evidence.unconsumed_broken([*policy.upstream, environment]):
        missing.append(Missing("invalid", broken.environment, broken.line()))
    return EvidenceVerdict(missing=tuple(missing), met=tuple(met), override=override)
