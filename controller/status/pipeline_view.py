"""A model's path through the promotion pipeline, as ``sluice status`` prints it::

    staging v7 ✓ canary, soak 6h/24h → production waiting (soak), serving v6
    staging v8 canary 10%, soak -/24h → production waiting (canary, soak), serving v7
    staging v7 ✗ quarantined, ✓ canary, ✓ soak 24h → production blocked (quarantined), serving v6
    staging v7 ✗ canary (signature check failed), soak -/24h → production blocked (canary
    evidence broken), serving v6

One entry per model of each environment whose ``sluice.yaml`` has a ``promotion:`` block: the
version each upstream environment pins, each requirement of the policy there (met, under way,
missing, failed: judged against, or broken: its evidence did not verify), and what the
environment downstream does with it (serves it, is ready for its proposal, waits for
evidence, or is blocked). :func:`pipeline_entry` builds it JSON-ready from values (the
verdict of :func:`~controller.evidence.evaluate.evaluate` and the checked evidence),
:func:`pipeline_line` draws the line from it, :func:`pipeline_lines` the line and each piece of
evidence under it as ``sluice status`` prints them (once, or ``--watch``), and
:func:`pipeline_change_key` says when a watched entry changed; all are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.evidence.evaluate import EvidenceVerdict, Missing, UpstreamState
from controller.evidence.policy import PromotionPolicy, duration_words
from controller.evidence.summary import piece
from controller.evidence.verify import EvidenceCheck

__all__ = ["Pin", "pipeline_change_key", "pipeline_entry", "pipeline_line", "pipeline_lines"]

#: What no evidence lifts: a quarantine, broken evidence, a later version upstream.
_BLOCKING = ("quarantined", "invalid", "superseded")


@dataclass(frozen=True)
class Pin:
    """What an environment's pin says of the model: the version and its canary weight (None
    or 100: it serves alone)."""

    environment: str
    version: int | None
    canary_percent: int | None = None
    #: When the version was promoted to 100 % there (its soak began), if it was.
    promoted_at: float | None = None

    @property
    def rolling_out(self) -> bool:
        """A canary of the pinned version takes part of the traffic."""
        return self.canary_percent not in (None, 100)


def _requirement(kind: str, state: str, text: str) -> dict[str, str]:
    return {"kind": kind, "state": state, "text": text}


def _found(
    checks: Sequence[EvidenceCheck], environment: str, kind: str, *, verified: bool
) -> EvidenceCheck | None:
    return next(
        (
            check
            for check in checks
            if check.verified == verified and (check.environment, check.kind) == (environment, kind)
        ),
        None,
    )


def _soak_judged_against(check: EvidenceCheck) -> bool:
    """The soak saw an alert or a query out of bounds (its time served is not the matter)."""
    body = check.predicate.get("soak", {})
    if not isinstance(body, Mapping):
        return False
    return bool(body.get("alerts")) or any(not q.get("ok") for q in body.get("queries", []))


def _state(kind: str, lack: Missing | None, pin: Pin, checks: Sequence[EvidenceCheck]) -> str:
    """met, under way, missing, failed (judged against: a shadow verdict that did not pass, a
    soak that saw an alert) or broken (its evidence failed verification)."""
    env = pin.environment
    verified = _found(checks, env, kind, verified=True)
    if lack is None:
        return "met"
    if verified is not None:
        if kind == "soak" and not _soak_judged_against(verified):
            return "under way"
        return "failed"
    if _found(checks, env, kind, verified=False) is not None:
        return "broken"
    if kind == "canary" and pin.rolling_out:
        return "under way"
    if kind == "soak" and pin.promoted_at is not None:
        return "under way"  # soaking: its evidence is recorded once the soak is decided
    return "missing"


def _text(
    kind: str,
    state: str,
    policy: PromotionPolicy,
    pin: Pin,
    checks: Sequence[EvidenceCheck],
    now: float | None,
) -> str:
    if state == "broken":
        broken = _found(checks, pin.environment, kind, verified=False)
        return f"{kind} ({broken.failed if broken else 'its'} check failed)"
    if kind == "soak":
        if state == "met":
            return f"soak {policy.require.soak}"
        soak = _found(checks, pin.environment, "soak", verified=True)
        body = soak.predicate.get("soak", {}) if soak is not None else {}
        if soak is None or not isinstance(body, Mapping):
            if pin.promoted_at is not None and now is not None:
                return f"soak {duration_words(now - pin.promoted_at)}/{policy.require.soak}"
            return f"soak -/{policy.require.soak}"
        served = duration_words(float(body.get("durationSeconds", 0)))
        alerts = [str(alert) for alert in body.get("alerts", [])]
        failing = [str(q.get("name")) for q in body.get("queries", []) if not q.get("ok")]
        if alerts:
            return f"soak {served} with alert {', '.join(alerts)}"
        if failing:
            return f"soak {served} with {', '.join(failing)} out of bounds"
        return f"soak {served}/{policy.require.soak}"
    if kind == "canary" and state == "under way":
        return f"canary {pin.canary_percent}%"
    return kind if state != "missing" else f"no {kind}"


def _requirements(
    policy: PromotionPolicy,
    pin: Pin,
    state: UpstreamState,
    missing: Mapping[str, Missing],
    checks: Sequence[EvidenceCheck],
    now: float | None,
) -> list[dict[str, str]]:
    """Each of the policy's requirements in one upstream environment, and what judged the
    version there (a quarantine, a later version)."""
    found: list[dict[str, str]] = []
    if state.quarantined is not None:
        found.append(_requirement("quarantined", "failed", "quarantined"))
    if state.superseded_by is not None:
        found.append(_requirement("superseded", "failed", f"superseded by v{state.superseded_by}"))
    wanted: list[str] = []
    if policy.require.canary:
        wanted.append("canary")
    if policy.require.shadow == "always" or (
        policy.require.shadow == "if-run" and state.shadow_ran
    ):
        wanted.append("shadow")
    if policy.require.soak is not None:
        wanted.append("soak")
    for kind in wanted:
        judged = _state(kind, missing.get(kind), pin, checks)
        text = _text(kind, judged, policy, pin, checks, now)
        found.append(_requirement(kind, judged, text))
    return found


def _downstream(
    serving: Pin, version: int | None, verdict: EvidenceVerdict | None, broken: Sequence[str]
) -> tuple[str, list[str]]:
    """What the environment downstream does with the version, and what it waits on or is
    blocked by (``broken``: the required kinds whose evidence failed verification)."""
    if version is None or verdict is None:
        return "nothing to promote", []
    if serving.version == version:
        return ("rolling out" if serving.rolling_out else "serves"), []
    kinds: list[str] = list(dict.fromkeys(m.kind for m in verdict.missing))
    blocking = [kind for kind in kinds if kind in _BLOCKING]
    blocking += [f"{kind} evidence broken" for kind in dict.fromkeys(broken)]
    if blocking:
        return "blocked", blocking
    if kinds:
        return "waiting", kinds
    return "ready", []


def pipeline_entry(
    *,
    environment: str,
    model: str,
    policy: PromotionPolicy,
    upstream: Sequence[Pin],
    states: Sequence[UpstreamState],
    serving: Pin,
    verdict: EvidenceVerdict | None,
    checks: Sequence[EvidenceCheck],
    now: float | None = None,
) -> dict[str, Any]:
    """One model's path into ``environment``, JSON-ready. The version held to the policy is
    the one the first upstream environment pins; ``verdict`` is its verdict for a proposal
    (None when nothing is pinned upstream), ``checks`` its checked evidence, ``serving`` the
    environment's own pin; ``now`` says how long a soak not yet decided has run."""
    version = upstream[0].version if upstream else None
    missing = {(m.environment, m.kind): m for m in (verdict.missing if verdict else ())}
    by_name = {state.environment: state for state in states}
    hops: list[dict[str, Any]] = []
    for pin in upstream:
        said = by_name.get(pin.environment, UpstreamState(pin.environment))
        mine: dict[str, Missing] = {
            kind: m for (env, kind), m in missing.items() if env == pin.environment
        }
        hops.append(
            {
                "environment": pin.environment,
                "version": pin.version,
                "canaryPercent": pin.canary_percent if pin.rolling_out else None,
                "requirements": (
                    _requirements(policy, pin, said, mine, checks, now)
                    if pin.version is not None and verdict is not None
                    else []
                ),
            }
        )
    broken = [str(r["kind"]) for hop in hops for r in hop["requirements"] if r["state"] == "broken"]
    state, waiting = _downstream(serving, version, verdict, broken)
    return {
        "environment": environment,
        "model": model,
        "version": version,
        "serving": serving.version,
        "state": state,
        "waitingFor": waiting,
        "upstream": hops,
        "missing": verdict.lines() if verdict else [],
        "met": list(verdict.met) if verdict else [],
        "evidence": [piece(check) for check in checks],
    }


_MARKS = {"met": "✓ ", "failed": "✗ ", "broken": "✗ ", "under way": "", "missing": ""}


def pipeline_line(entry: Mapping[str, Any]) -> str:
    """``staging v7 ✓ canary, soak 6h/24h → production waiting (soak)``."""
    hops = []
    for hop in entry["upstream"]:
        version = f"v{hop['version']}" if hop["version"] is not None else "nothing pinned"
        marks = ", ".join(_MARKS[r["state"]] + r["text"] for r in hop["requirements"])
        hops.append(" ".join(part for part in (hop["environment"], version, marks) if part))
    state = entry["state"]
    downstream = f"{entry['environment']} {state}"
    if state in ("serves", "rolling out"):
        downstream += f" v{entry['version']}"
    elif state == "ready":
        downstream += f" for v{entry['version']}"
    elif entry["waitingFor"]:
        downstream += f" ({', '.join(entry['waitingFor'])})"
    if state not in ("serves", "rolling out") and entry["serving"] is not None:
        downstream += f", serving v{entry['serving']}"
    return f"{' + '.join(hops)} → {downstream}"


def pipeline_lines(entries: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> list[str]:
    """What ``sluice status`` prints of the pipeline, once and ``--watch``: each model's path
    (:func:`pipeline_line`), each piece of the version's evidence under it, then each note."""
    lines: list[str] = []
    for entry in entries:
        lines.append(f"{entry['model']}: {pipeline_line(entry)}")
        for data in entry["evidence"]:
            mark = "✓" if data["verified"] else "✗"
            words = data["headline"] if data["verified"] else f"{data['failed']} check failed"
            lines.append(
                f"  v{entry['version']} {mark} {data['kind']} in {data['environment']}"
                + (f": {words}" if words else "")
            )
    lines += [f"pipeline: {note}" for note in notes]
    return lines


def pipeline_change_key(entry: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes an entry worth printing again in a piped watch: everything but the clock of
    a soak under way (``soak 6h/24h`` becoming ``7h/24h`` is not news; its end is)."""
    return (
        entry["version"],
        entry["serving"],
        entry["state"],
        tuple(entry["waitingFor"]),
        tuple(
            (hop["environment"], hop["version"], r["kind"], r["state"])
            for hop in entry["upstream"]
            for r in hop["requirements"]
        ),
        tuple((data["kind"], data["environment"], data["verified"]) for data in entry["evidence"]),
    )
