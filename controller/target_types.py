"""What a deployment target reports about an environment's InferenceService.

The rollout trusts the target for two facts only: whether the environment has synced the
commit that Git says should serve (Argo CD's ``status.sync``), and which revisions are ready
and take traffic (KServe's ``status.components.predictor``). Both the local target and a
cluster (Kubernetes API + Argo CD REST API) are read into these values, so the rollout
decision is the same pure function on either. One difference stays visible in them: the local
router mirrors a shadow phase's requests by itself, while a cluster needs Sluice to write the
mirror into Git (``mirrors_shadow``).

A target that runs an InferenceGraph's router of Sluice's also answers what the graph would
have answered had one member answered otherwise (:class:`~controller.ports.GraphReplay`): one
:class:`ReplayedAnswer` per given answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReplayedAnswer", "TargetObservation", "TrafficEntry"]


@dataclass(frozen=True)
class TrafficEntry:
    """One entry of ``status.components.predictor.traffic``."""

    revision: str
    percent: int
    latest: bool
    tag: str | None = None
    #: The tag route's URL (``http://latest-NAME-predictor.NS.example.com`` on a cluster,
    #: ``http://127.0.0.1:PORT/_tag/latest`` locally), where a load test reaches this revision.
    url: str | None = None


@dataclass(frozen=True)
class TargetObservation:
    """An InferenceService of one environment as the target sees it now.

    ``exists`` is False when the environment has not applied it (yet); every other field is
    then empty. ``synced_revision`` is the Git commit the environment last synced.
    """

    exists: bool
    synced_revision: str | None = None
    #: Argo CD's ``status.sync.status``: Synced, OutOfSync or Unknown.
    sync_status: str = "Unknown"
    #: Argo CD's health of the InferenceService: Healthy, Progressing, Degraded, Suspended…
    health: str = "Unknown"
    health_message: str = ""
    namespace: str = "default"
    #: Knative's configuration name (``NAME-predictor``), a label of the request metrics.
    configuration: str = ""
    url: str | None = None
    latest_created: str | None = None
    latest_ready: str | None = None
    latest_rolledout: str | None = None
    previous_rolledout: str | None = None
    traffic: tuple[TrafficEntry, ...] = ()
    #: Set when the latest created revision failed (KServe's ``RevisionFailed`` reason).
    failure: str | None = None
    #: Annotations of the applied object (``sluice.dev/*``), to tell which version a revision is.
    annotations: dict[str, str] = field(default_factory=dict)
    #: The target copies a shadow phase's requests to the challenger by itself (the local
    #: router does). KServe on a cluster does not: there the copy is Sluice's Istio
    #: VirtualService, which the rollout commits into the environment's overlay.
    mirrors_shadow: bool = False
    #: ``Kind/name`` of objects Git no longer holds that still run (Argo CD's
    #: ``requiresPruning``): an Application that does not prune leaves them live.
    requires_pruning: tuple[str, ...] = ()

    def percent_of(self, revision: str | None) -> int:
        """Total traffic percent ``revision`` takes (0 when it takes none)."""
        return sum(t.percent for t in self.traffic if revision and t.revision == revision)

    def tagged(self, tag: str) -> TrafficEntry | None:
        """The traffic entry carrying ``tag`` (``latest``, ``prev``), if any."""
        return next((t for t in self.traffic if t.tag == tag), None)


@dataclass(frozen=True)
class ReplayedAnswer:
    """What a graph answered to one replayed member answer: its HTTP status and its body as
    JSON (None when the body was not JSON)."""

    status: int
    output: object | None
