"""Everything a rollout decision reads, as plain values gathered from Git, registry and target."""

from __future__ import annotations

from dataclasses import dataclass

from controller.gates.graph_replay import ReplayPayloads
from controller.gates.graph_traffic import GraphTraffic
from controller.manifests.manifest import PinnedRelease
from controller.rollout.record import AnalysisRecord
from controller.shadow.mirror import ShadowMirror
from controller.target_types import TargetObservation

__all__ = ["ReleaseObservation"]


@dataclass(frozen=True)
class ReleaseObservation:
    """One model in one environment, now.

    ``pin`` is what Git says should serve at the branch tip ``head``; ``pin_commit`` and
    ``pin_changed_at`` are the last commit that changed the pin and its commit time, which
    start the clock of the current phase. ``champion`` is the version the environment's
    champion alias points at; ``quarantined`` the reason a candidate was quarantined, if it was.
    """

    model: str
    environment: str
    inference_service: str
    pin: PinnedRelease
    head: str
    pin_commit: str
    pin_changed_at: float
    target: TargetObservation
    champion: int | None = None
    quarantined: str | None = None
    analysis: AnalysisRecord | None = None
    #: The sluice.dev/rollback-reason annotation of the pin (set by the first rollback commit).
    rollback_reason: str | None = None
    #: Its sluice.dev/rollback-verdict: ``aborted`` when no gate judged the model (a pin
    #: rolled back before the annotation existed reads as ``failed``).
    rollback_verdict: str | None = None
    #: The rollback commit whose abort the registry recorded (``sluice.rollout.ENV.commit``).
    aborted_commit: str | None = None
    #: Why the version's last rollout here was aborted (``sluice.rollout.ENV.reason``), if it was.
    aborted: str | None = None
    #: The sluice.dev/restored-from annotation: the bad version a Serverless restore replaced,
    #: set until the restored revision is ready and takes all traffic.
    restored_from: int | None = None
    #: The share of live requests mirrored to the challenger while the pin is in its shadow
    #: phase (``sluice.dev/phase: shadow`` at weight 0); None outside it.
    shadow_percent: float | None = None
    #: The pin is in its smoke phase (weight 0 with ``sluice.dev/phase: smoke``): the new
    #: revision takes no client traffic until the smoke passed.
    smoke: bool = False
    #: The ``Sluice-Action`` trailer of ``pin_commit`` (propose, step, promote, rollback, restore).
    pin_action: str | None = None
    #: Sluice's shadow VirtualService in the environment's overlay at ``head`` (the challenger
    #: revision it copies requests to, and how many); None when Git holds none.
    shadow_mirror: ShadowMirror | None = None
    #: The commit time of the last change to that VirtualService (None without one).
    shadow_mirror_changed_at: float | None = None
    #: The release's ``graphTraffic``: its gates read the graph's calls to it (None: its own
    #: revision series).
    graph_traffic: GraphTraffic | None = None
    #: The rows of ``graph_traffic.replay``'s file, read from Git with the environment's
    #: configuration (None: the release replays nothing).
    replay: ReplayPayloads | None = None
    #: The pinned version's provenance check failed under the environment's enforcing policy:
    #: the check's line (naming the failed link, e.g. the file whose bytes changed). Verified
    #: when the rollout is about to judge or promote the version; None when it verified or
    #: nothing was checked.
    provenance_failure: str | None = None

    @property
    def synced(self) -> bool:
        """The target has applied the branch tip."""
        target = self.target
        return target.exists and target.synced_revision == self.head

    @property
    def canary_revision(self) -> str | None:
        """The revision that serves the pinned spec: the latest created one once synced."""
        return self.target.latest_created if self.synced else None
