"""An InferenceService the local runtime has applied: its manifest, revisions and KServe status.

Why a module of its own (it was part of :mod:`controller.local.runtime`): KServe turns one
manifest into revisions and traffic in two ways, by its deployment mode. In Serverless mode
every new predictor template is a Knative revision and ``canaryTrafficPercent`` splits the
latest one against the previous rollout (:mod:`controller.local.kserve_status`); in
RawDeployment mode ``spec.predictor`` and the ``spec.canary`` entry each run as a Deployment,
split by ``trafficPercent`` (:mod:`controller.local.raw_status`). Which records a manifest
needs, which status they give, and which servers may stop are one question per mode, answered
here from plain values; the runtime keeps the loop and the processes, routers and state file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.local.isvc_object import AppliedInferenceService
from controller.local.kserve_status import IsvcStatus, PreviousStatus, Revision, reconcile_status
from controller.local.raw_status import RawSpec, reconcile_raw_status
from controller.local.revisions import (
    PlannedPredictor,
    RevisionPlan,
    RevisionRecord,
    plan_revisions,
    predictor_spec,
)
from controller.local.router import Router
from controller.local.router import TrafficTarget as Route
from controller.local.state import utc_now

__all__ = ["InferenceServiceRuntime"]


@dataclass
class InferenceServiceRuntime(AppliedInferenceService):
    """One applied InferenceService: its manifest, revisions, router and last status."""

    document: dict[str, Any]
    router: Router
    records: list[RevisionRecord] = field(default_factory=list)
    counter: int = 0
    generation: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    #: After a restart: the revisions the saved traffic named, which must answer again before
    #: the status is recomputed (a cluster's pods outlive its controllers; ours restart).
    resuming: set[str] = field(default_factory=set)
    #: Why the API server refused the manifest of the last sync ("" once one is applied): the
    #: InferenceService keeps running what it ran before, as on a cluster.
    refused: str = ""

    @property
    def plan(self) -> RevisionPlan:
        """What the applied manifest asks KServe to run (it validated when it was applied)."""
        return plan_revisions(self.document)

    @property
    def problem(self) -> str:
        """Why it does not serve what Git asks, in one line naming the fix ("" when nothing
        is wrong): a refused manifest, or the failure of its newest revision."""
        if self.refused:
            return f"not applied: {self.refused}"
        latest = self.records[-1] if self.records else None
        if latest is None or not latest.failure:
            return ""
        if not latest.storage_uri:
            return latest.failure  # it names the InferenceService and the command to run
        return f"revision {latest.name} failed: {latest.failure}"

    def apply(
        self, document: dict[str, Any], plan: RevisionPlan, *, unpinned: str = ""
    ) -> list[RevisionRecord]:
        """Take ``document`` as the applied manifest; returns the revisions it created.

        Serverless: a template other than the latest revision's is a new revision (even a
        revert). RawDeployment: a template no running revision has is a new one; one that runs
        keeps its revision, so a promoted canary goes on serving from the same server.
        A predictor without a ``storageUri`` is a revision too, failed from the start with the
        message ``unpinned`` (its model server would have nothing to load).
        """
        if self.generation == 0 or self.document.get("spec") != document.get("spec"):
            self.generation += 1
        self.document = document
        self.refused = ""
        if plan.mode == "Serverless":
            (wanted,) = plan.predictors
            if self.records and self.records[-1].fingerprint == wanted.fingerprint:
                return []
            return [self._create(wanted, unpinned)]
        return [self._create(p, unpinned) for p in plan.predictors if self._record(p) is None]

    def reconcile(self, revisions: list[Revision]) -> IsvcStatus:
        """One KServe pass over the revisions' states now (oldest first, as in ``records``)."""
        previous = PreviousStatus.from_dict(self.status)
        common: dict[str, Any] = {
            "now": utc_now(),
            "url": self.router.url,
            "namespace": self.namespace,
            "generation": self.generation,
        }
        plan = self.plan
        if plan.mode == "Serverless":
            spec = predictor_spec(self.document)
            return reconcile_status(self.name, spec, revisions, previous, **common)
        primary, canary = (self._record(p) for p in (plan.predictors[0], plan.canary))
        assert primary is not None  # apply() created it
        raw = RawSpec(
            primary=primary.name,
            canary=canary.name if canary else "",
            canary_name=plan.canary.canary if plan.canary else "",
            traffic_percent=plan.traffic_percent or 0,
            primary_name=plan.primary_name,
        )
        return reconcile_raw_status(self.name, raw, revisions, previous, **common)

    def live(self, result: IsvcStatus) -> set[str]:
        """The revisions whose servers must keep running after a pass that gave ``result``."""
        keep = {result.latest_created, result.latest_ready, result.rollout.latest}
        keep.add(result.rollout.previous)
        keep |= {t.revision_name for t in result.traffic}
        keep |= {r.name for p in self.plan.predictors if (r := self._record(p)) is not None}
        return keep

    def _record(self, planned: PlannedPredictor | None) -> RevisionRecord | None:
        """The newest revision running ``planned``'s template."""
        if planned is None:
            return None
        running = (r for r in reversed(self.records) if r.fingerprint == planned.fingerprint)
        return next(running, None)

    def _create(self, planned: PlannedPredictor, unpinned: str) -> RevisionRecord:
        self.counter += 1
        name = f"{self.name}-predictor-{self.counter:05d}"
        record = RevisionRecord(name, planned.fingerprint, planned.storage_uri, utc_now())
        if not planned.storage_uri:
            record.failure = unpinned or f"InferenceService {self.name} has no storageUri"
        self.records.append(record)
        return record
