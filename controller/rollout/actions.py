"""What a rollout pass may do: one small, named action per pass (Kargo's promotion steps).

Each action is a value; :mod:`controller.rollout.act` carries it out. Commits carry the gate
results that justified them, so the Git history explains every traffic change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from controller.analysis_types import GateResult
from controller.rollout.record import AnalysisRecord

__all__ = [
    "Abort",
    "Action",
    "Analyze",
    "AnalyzeShadow",
    "EndShadow",
    "EndSmoke",
    "Finish",
    "FinishRestore",
    "Hold",
    "Outcome",
    "Promote",
    "Quarantine",
    "RestorePrevious",
    "RollbackVerdict",
    "SetChampion",
    "SetWeight",
    "Smoke",
    "StartMirror",
    "StartRollback",
    "StopMirror",
    "Wait",
    "Watch",
]


class Outcome(enum.StrEnum):
    """How a rollout ended (or that nothing is rolling out)."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    IDLE = "idle"
    FAILED = "failed"


@dataclass(frozen=True)
class Wait:
    """Nothing to do until the world moves (a sync, a revision loading, the next interval).

    ``retry_after`` is set when the wait has a known end (the next analysis is due in that
    many seconds); without it the world moves on its own (a sync, a revision loading), and
    the caller polls.
    """

    reason: str
    phase: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Watch(Wait):
    """A step takes client traffic and its next analysis is not due: read the canary's own
    request counters since ``since`` (the step's commit) and run the sequential test
    (:mod:`controller.gates.sequential_watch`). Unless the evidence is conclusive it is the
    :class:`Wait` it extends, and the next pass comes after ``period`` seconds."""

    step: int = 0
    since: float = 0.0
    period: float = 1.0


@dataclass(frozen=True)
class Smoke:
    """The new revision is ready at weight 0: send it the smoke (:mod:`controller.gates.smoke`)
    on its tag route; a pass leads to ``to_percent`` (or, in a shadow phase, to the judge)."""

    to_percent: int
    #: The smokes tried so far at this pin (the shadow phase's record when it runs at its
    #: start); None: the first try.
    record: AnalysisRecord | None = None
    #: Whether the smoke runs at the start of a shadow phase (else in a smoke phase).
    shadow: bool = False


@dataclass(frozen=True)
class EndSmoke:
    """The smoke passed: commit the first canary step, without the smoke annotation."""

    to_percent: int
    results: tuple[GateResult, ...]


@dataclass(frozen=True)
class Analyze:
    """Run every gate against the canary at ``step``; then :func:`conclude` decides."""

    step: int
    look: int
    record: AnalysisRecord


@dataclass(frozen=True)
class AnalyzeShadow:
    """Judge the challenger's answers to the mirrored requests against the champion's."""

    look: int
    record: AnalysisRecord


@dataclass(frozen=True)
class StartMirror:
    """Commit Sluice's Istio VirtualService into the overlay: ``percent`` % of the requests to
    the ``primary`` revision are copied to the ``challenger`` revision (a cluster target; the
    local router mirrors by itself)."""

    primary: str
    challenger: str
    percent: float


@dataclass(frozen=True)
class StopMirror:
    """Git holds Sluice's shadow VirtualService outside a shadow phase: commit its removal."""

    reason: str


@dataclass(frozen=True)
class EndShadow:
    """The shadow judge passed: commit the first canary step, without the shadow annotations.

    ``report`` is the judge's Markdown report, for the pull request; ``details`` the Markdown
    it adds after the checks (a multiclass judge's confusion matrices), for the commit body;
    ``reason``, ``samples`` and ``labelled`` the judgement's, for the shadow evidence.
    """

    to_percent: int
    results: tuple[GateResult, ...]
    report: str = ""
    details: str = ""
    reason: str = ""
    samples: int = 0
    labelled: int = 0


@dataclass(frozen=True)
class Hold:
    """Keep the step and record the analysis (it failed or was inconclusive, under the limits)."""

    record: AnalysisRecord
    reason: str
    #: ``sluice_rollout_phase`` while holding: a shadow phase holds while it waits for data.
    phase: str = "analysing"


@dataclass(frozen=True)
class SetWeight:
    """Commit the next canary step."""

    from_percent: int
    to_percent: int
    results: tuple[GateResult, ...]


@dataclass(frozen=True)
class Promote:
    """Commit the end of the canary: no ``canaryTrafficPercent``, the new version takes 100%."""

    from_percent: int
    results: tuple[GateResult, ...]


@dataclass(frozen=True)
class SetChampion:
    """The promoted version serves everything: move the champion alias to it."""

    version: int
    previous: int | None


#: Why traffic goes back: ``failed`` (the model was judged worse: it is quarantined) or
#: ``aborted`` (no verdict: a tool did not work, evidence never came, a deadline passed; the
#: version is not quarantined and may be proposed again).
RollbackVerdict = Literal["failed", "aborted"]


@dataclass(frozen=True)
class StartRollback:
    """Commit ``canaryTrafficPercent: 0``: all traffic back to the previous rollout at once.

    ``details`` is Markdown the commit body adds after the gates (a multiclass shadow judge's
    confusion matrices)."""

    reason: str
    results: tuple[GateResult, ...] = ()
    verdict: RollbackVerdict = "failed"
    details: str = ""


@dataclass(frozen=True)
class Quarantine:
    """Tag the rolled-back version so proposals skip it."""

    version: int
    reason: str


@dataclass(frozen=True)
class Abort:
    """Record on the version that its rollout in this environment was aborted, and why (the
    registry's ``sluice.rollout.ENV`` tag), instead of quarantining it."""

    version: int
    reason: str


@dataclass(frozen=True)
class RestorePrevious:
    """Commit the previous version's pin (no canary field), so Git says what serves."""

    version: int
    previous: int
    reason: str
    verdict: RollbackVerdict = "failed"


@dataclass(frozen=True)
class FinishRestore:
    """The restored revision is ready: commit the pin without the weight, it takes everything."""

    version: int
    restored_from: int


@dataclass(frozen=True)
class Finish:
    """Nothing left to do: the rollout ended (or there is none)."""

    outcome: Outcome
    reason: str


Action = (
    Wait
    | Watch
    | Smoke
    | EndSmoke
    | Analyze
    | AnalyzeShadow
    | StartMirror
    | StopMirror
    | EndShadow
    | Hold
    | SetWeight
    | Promote
    | SetChampion
    | StartRollback
    | Quarantine
    | Abort
    | RestorePrevious
    | FinishRestore
    | Finish
)
