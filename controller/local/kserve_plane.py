"""The KServe and Knative half of the local runtime: revisions, their servers, routes, mirrors.

:class:`KServePlane` holds the applied InferenceServices (:mod:`controller.local.applied`), the
model server of each revision (:class:`~controller.local.revisions.ModelServers`) and a router
per InferenceService. Each pass (:meth:`KServePlane.reconcile`) runs KServe's status logic, points
a router at the resolved traffic once every revision in it answers, copies the primary's requests
to a shadow revision while Git asks for one, and stops the servers of retired revisions. What
Git holds and when it is applied is the runtime's side (:mod:`controller.local.runtime`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controller.backends.prediction_stores import PredictionLog, open_prediction_log
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import SluiceError
from controller.gates.metrics_profile import DEFAULT_PROFILE, MetricsProfile, resolve_profile
from controller.local.applied import InferenceServiceRuntime
from controller.local.kserve_status import IsvcStatus, Revision, RevisionState
from controller.local.mirror import ShadowTarget
from controller.local.revisions import ModelServers, RevisionPlan, unpinned_message
from controller.local.router import Router
from controller.local.router import TrafficTarget as Route
from controller.local.scrape import ModelServerTarget, ScrapeTargets
from controller.local.stable_ports import stable_free_port
from controller.local.state import PREDICTION_LOG_FILE
from controller.settings import Settings
from controller.shadow.phase import shadow_request, shadow_revisions

__all__ = ["KServePlane", "namespace_of"]

# About 265 bytes a row: some 50 MB on disk, 100,000 requests with both answers.
_PREDICTION_LOG_ROWS = 200_000
# Written by `sluice propose` (controller.manifests.manifest): the version the pinned storageUri
# holds.
_VERSION_ANNOTATION = "sluice.dev/model-version"
_log = logging.getLogger("sluice.local.runtime")


def routers_prediction_log(state_dir: Path) -> PredictionLog:
    """Where the routers log their answers: the PostgreSQL store when
    ``SLUICE_PREDICTION_STORE_URL`` was set for ``sluice local up`` (the URL reaches this process
    in its environment, never on a command line that ``ps`` shows), so that ``sluice rollout``,
    ``sluice feedback`` and ``sluice serve``, which read the store the settings name, find them;
    else the SQLite file in the state directory, bounded to the newest answers."""
    settings = Settings()
    if settings.prediction_store_url is not None:
        return open_prediction_log(settings, state_dir / PREDICTION_LOG_FILE)
    return SqlitePredictionLog(state_dir / PREDICTION_LOG_FILE, max_rows=_PREDICTION_LOG_ROWS)


class KServePlane:
    """The InferenceServices of one environment as KServe and Knative would run them."""

    def __init__(
        self,
        state_dir: Path,
        *,
        env: str,
        port_base: int | None,
        progress_deadline: float,
        server_env: dict[str, str],
    ) -> None:
        self.env = env
        self.port_base = port_base
        self.servers = ModelServers(
            state_dir / "revisions", env=server_env, progress_deadline=progress_deadline
        )
        self.isvcs: dict[str, InferenceServiceRuntime] = {}
        self.ports: dict[str, int] = {}
        # Every router logs its main route's answers, primary and shadow, for the shadow judge
        # and the KPI checks.
        self.predictions = routers_prediction_log(state_dir)
        self.shadows: dict[str, ShadowTarget] = {}  # by InferenceService, while it mirrors
        # The environment policy's metrics profile at the synced commit (what routers export).
        self.metrics_profile = resolve_profile(DEFAULT_PROFILE)

    def set_metrics_profile(self, profile: MetricsProfile) -> None:
        """Export request metrics under ``profile`` from every router, now and later."""
        self.metrics_profile = profile
        for isvc in self.isvcs.values():
            isvc.router.metrics.set_profile(profile)

    def apply(self, document: dict[str, Any], plan: RevisionPlan) -> str:
        """Apply one InferenceService; a predictor template not running yet is a new revision."""
        name = str(document["metadata"]["name"])
        isvc = self.isvcs.get(name)
        if isvc is None:
            router = self.router(name, namespace_of(document))
            isvc = self.isvcs[name] = InferenceServiceRuntime(document, router)
        unpinned = unpinned_message(document, self.env)
        for record in isvc.apply(document, plan, unpinned=unpinned):
            if record.failure:
                _log.warning("%s: new revision %s: %s", name, record.name, record.failure)
            else:
                _log.info("%s: new revision %s (%s)", name, record.name, record.storage_uri)
        return name

    def reconcile(self) -> tuple[bool, dict[str, tuple[str, str]]]:
        """One KServe pass over every InferenceService: whether a revision still loads, and
        each InferenceService's health as Argo CD's check reads it."""
        from controller.backends.argocd_health import inferenceservice_health  # imports lupa

        busy, healths = False, {}
        for isvc in self.isvcs.values():
            if not isvc.records:
                continue
            revisions = [self.servers.observe(r, isvc.name) for r in isvc.records]
            ready = {r.name for r in revisions if r.state is RevisionState.READY}
            if isvc.resuming - ready and any(r.state is RevisionState.LOADING for r in revisions):
                busy = True  # keep the saved status and route nothing until they answer
                continue
            isvc.resuming = set()
            result = isvc.reconcile(revisions)
            isvc.status = result.status
            self._route(isvc, result, revisions)
            self._mirror(isvc, result, revisions)
            self._retire(isvc, result)
            health = inferenceservice_health(isvc.to_object())
            isvc.health = {"status": health.status, "message": health.message}
            healths[isvc.name] = (health.status, health.message)
            busy |= any(r.state is RevisionState.LOADING for r in revisions)
        return busy, healths

    # -- pieces of a pass ------------------------------------------------------------------

    def _route(
        self, isvc: InferenceServiceRuntime, result: IsvcStatus, revisions: list[Revision]
    ) -> None:
        """Point the router at the resolved traffic once every revision in it answers."""
        ready = {r.name for r in revisions if r.state is RevisionState.READY}
        routes = []
        for target in result.traffic:
            url = self.servers.url(target.revision_name)
            if target.revision_name not in ready or url is None:
                return  # keep the routes that work until the new ones do
            routes.append(Route(target.revision_name, url, target.percent, target.tag))
        if routes != isvc.routes:
            isvc.router.set_routes(routes)
            isvc.routes = routes
            split = ", ".join(f"{r.revision} {r.percent}%" for r in routes)
            _log.info("%s: traffic %s", isvc.name, split)

    def _mirror(
        self, isvc: InferenceServiceRuntime, result: IsvcStatus, revisions: list[Revision]
    ) -> None:
        """Copy the primary's requests to the latest revision while Git asks for a shadow."""
        target = self._shadow_target(isvc, result, revisions)
        if target == self.shadows.get(isvc.name):
            return
        isvc.router.set_shadow(target)
        if target is None:
            del self.shadows[isvc.name]
            _log.info("%s: mirroring stopped", isvc.name)
            return
        self.shadows[isvc.name] = target
        _log.info(
            "%s: mirroring %g%% of %s's requests to %s",
            *(isvc.name, target.percent, target.primary, target.revision),
        )

    def _shadow_target(
        self, isvc: InferenceServiceRuntime, result: IsvcStatus, revisions: list[Revision]
    ) -> ShadowTarget | None:
        """The shadow Git asks for, once its revision answers beside the one serving 100 %."""
        try:
            request = shadow_request(isvc.document)
        except SluiceError:  # logged when the document was synced
            return None
        pair = shadow_revisions(result.status) if request is not None else None
        if request is None or pair is None:
            return None
        upstream = self.servers.url(pair.shadow)
        ready = any(r.name == pair.shadow and r.state is RevisionState.READY for r in revisions)
        if not ready or upstream is None:
            return None
        # The annotation names the model of the manifest's template, the newest revision's.
        annotations = isvc.document.get("metadata", {}).get("annotations") or {}
        newest = pair.shadow == isvc.records[-1].name
        version = str(annotations.get(_VERSION_ANNOTATION, "")) if newest else ""
        return ShadowTarget(pair.shadow, upstream, request.percent, version, pair.primary)

    def _retire(self, isvc: InferenceServiceRuntime, result: IsvcStatus) -> None:
        """Stop the servers of revisions the status no longer mentions."""
        keep = isvc.live(result)
        for record in isvc.records:
            if record.name not in keep:
                _log.info("%s: retiring %s", isvc.name, record.name)
                self.servers.stop(record.name)
        isvc.records = [r for r in isvc.records if r.name in keep]

    def port(self, key: str) -> int:
        """The port of the router keyed ``key`` (an InferenceService's name; an
        InferenceGraph's router asks for ``InferenceGraph/<name>``): the one it had before, or
        a new stable one, all drawn from ``port_base`` in one sequence."""
        port = self.ports.get(key)
        if port is None:
            base = self.port_base
            port = base + len(self.ports) if base is not None else stable_free_port()
            self.ports[key] = port
        return port

    def router(self, name: str, namespace: str) -> Router:
        """A router on the port this InferenceService had before (or a new stable one)."""
        port = self.port(name)
        # Metrics carry the InferenceService's namespace, as Knative's queue-proxy labels do.
        router = Router(
            isvc=name,
            namespace=namespace,
            port=port,
            prediction_sink=self.predictions,
            metrics_profile=self.metrics_profile,
        )
        return router.start()

    def scrape_targets(self, other_routers: Iterable[int] = ()) -> ScrapeTargets:
        """The routers (with ``other_routers``, the InferenceGraphs') and model servers that run
        now, for Prometheus to scrape."""
        running = self.servers.running()
        servers = [
            ModelServerTarget(r.name, isvc.name, isvc.namespace, running[r.name]["port"])
            for isvc in self.isvcs.values()
            for r in isvc.records
            if r.name in running
        ]
        routers = [*(i.router.port for i in self.isvcs.values()), *other_routers]
        return ScrapeTargets.of(routers, servers)

    def remove(self, name: str) -> None:
        """Delete an InferenceService that left Git: its servers and router stop."""
        isvc = self.isvcs.pop(name)
        for record in isvc.records:
            self.servers.stop(record.name)
        isvc.router.stop()
        self.shadows.pop(name, None)

    def shutdown(self) -> None:
        """Stop every router and model server, then the prediction log."""
        for isvc in self.isvcs.values():
            isvc.router.stop()
        self.shadows.clear()
        self.servers.stop_all()
        self.predictions.close()  # after the routers: it commits every answer they logged


def namespace_of(document: dict[str, Any]) -> str:
    """``metadata.namespace`` of an applied object (``default`` when the overlay sets none)."""
    return str((document.get("metadata") or {}).get("namespace") or "default")
