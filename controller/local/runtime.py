"""The local target's control plane in one process: Argo CD, KServe and Knative, in a loop.

A cluster runs three controllers for a GitOps rollout: Argo CD syncs the branch into
InferenceServices, KServe turns each into a Knative service, Knative creates revisions, routes
traffic and reports status. This process plays all three for one environment, so the rollout
logic sees the same commits, revisions, traffic splits and ``status`` a cluster would give:

- every ``poll_interval`` seconds it fetches the branch; a new tip is rendered
  (:mod:`controller.local.sync`) and its InferenceServices applied. ``SIGUSR1`` makes it
  fetch at once, as a Git webhook makes Argo CD refresh: the controller sends it after each
  commit it pushes (:meth:`controller.local.target.LocalTarget.request_sync`), so a
  rollback takes effect in a fraction of a second rather than up to a poll later;
- a changed predictor template is a new revision with its own model server
  (:mod:`controller.local.revisions`); in RawDeployment mode ``spec.predictor`` and its
  ``spec.canary`` entry are a revision each (:mod:`controller.local.applied`);
- each pass (twice a second while a revision loads) runs KServe's status logic for the
  InferenceService's mode (:mod:`controller.local.kserve_status`,
  :mod:`controller.local.raw_status`), points the InferenceService's router at the resolved
  traffic, tells Prometheus when a router or server came or went
  (:mod:`controller.local.scrape`), and saves everything to ``runtime.json``, from which a
  restarted runtime resumes: same revisions, same router ports, same status;
- while an InferenceService asks for a shadow phase (:mod:`controller.shadow.phase`) and its
  0 % latest revision answers, its router copies the primary's requests there; every router
  logs its main route's answers, primary and shadow, to ``predictions.sqlite``;
- an InferenceGraph synced beside them gets a router of its own once every InferenceService it
  names has an endpoint, and a ``status`` and health as KServe and Argo CD would give it
  (:mod:`controller.local.graph_plane`).

A stack serving several environments (``sluice local up --env staging --env production``) runs
one runtime per environment, each in a state directory of its own, all scraped by one
Prometheus: each names the others' state directories (``--scrape-peer``) so the config it
writes keeps their targets too (:func:`controller.local.scrape.peer_targets`).

This module is the Argo CD half and the loop: it polls and syncs Git, applies what the sync
admits, and saves and resumes ``runtime.json`` (:mod:`controller.local.runtime_state`); the
KServe and Knative half is :class:`~controller.local.kserve_plane.KServePlane` (revisions,
their servers, routers and mirrors) and :class:`~controller.local.graph_plane.GraphPlane`
(InferenceGraphs).

Run it as ``python -m controller.local.runtime --state-dir DIR --remote URL --env ENV``;
``sluice local up`` does.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from controller.backends.git_repo import GitWorkspace
from controller.errors import SluiceError
from controller.gates.metrics_profile import DEFAULT_PROFILE, resolve_profile
from controller.local import forkserver, sync
from controller.local.applied import InferenceServiceRuntime
from controller.local.graph.headers import DEFAULT_PROPAGATED_HEADERS
from controller.local.graph_plane import GraphPlane, graph_refusal
from controller.local.kserve_plane import KServePlane, namespace_of
from controller.local.revisions import Admission, admit
from controller.local.runtime_state import (
    RUNTIME_FILE,
    resume_graphs,
    resume_inference_services,
    runtime_document,
)
from controller.local.scrape import PrometheusScrapeConfig, peer_targets
from controller.local.state import read_json, stop_pid, utc_now, write_json
from controller.manifests.environment import ENVIRONMENT_FILE, parse_environment
from controller.shadow.phase import shadow_request

__all__ = ["RUNTIME_FILE", "LocalRuntime", "RuntimeConfig", "main"]

_GROUP = "serving.kserve.io"
_ISVC, _GRAPH = "InferenceService", "InferenceGraph"
_BUSY_PASS_SECONDS = 0.5
_log = logging.getLogger("sluice.local.runtime")


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime syncs, where it keeps its state, and how it paces itself."""

    state_dir: Path
    remote: str
    env: str
    branch: str = "main"
    poll_interval: float = 3.0
    progress_deadline: float = 600.0
    port_base: int | None = None
    mlflow_tracking_uri: str | None = None
    prometheus_url: str | None = None
    prometheus_config: Path | None = None
    alertmanager_url: str | None = None
    #: Rule files every rewrite of ``prometheus_config`` names (the cluster's alert rules).
    prometheus_rules: tuple[Path, ...] = ()
    #: Header patterns the graphs' routers pass on to their steps: KServe's
    #: ``router.headers.propagate`` (inferenceservice-config), whose default is Authorization.
    propagate_headers: tuple[str, ...] = DEFAULT_PROPAGATED_HEADERS
    #: The state directories of the stack's other runtimes (its other environments), whose
    #: scrape targets the Prometheus config keeps beside this runtime's.
    scrape_peers: tuple[Path, ...] = ()

    @property
    def overlay(self) -> str:
        """The overlay the environment renders from, relative to the repository root."""
        return f"manifests/overlays/{self.env}"


class LocalRuntime:
    """The loop: poll Git, sync, reconcile each InferenceService, route, save."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.state_file = config.state_dir / RUNTIME_FILE
        self.workspace = GitWorkspace(config.remote, config.state_dir / "git")
        env = {"MLFLOW_TRACKING_URI": config.mlflow_tracking_uri or ""}
        self.plane = KServePlane(
            config.state_dir,
            env=config.env,
            port_base=config.port_base,
            progress_deadline=config.progress_deadline,
            server_env={k: v for k, v in env.items() if v},
        )
        self.graphs = GraphPlane(
            self.plane.port,
            self.plane.metrics_profile,
            config.propagate_headers,
            prediction_log=self.plane.predictions,
        )
        self.application = sync.new_application(
            config.env, config.remote, config.branch, config.overlay
        )
        # Set to cut a wait short: a refresh was asked for (SIGUSR1), or the runtime stops.
        self.wake = threading.Event()
        self._refresh_asked = False
        self._profile_sha: str | None = None
        self.scrape = PrometheusScrapeConfig(
            config.prometheus_config,
            config.prometheus_url,
            config.alertmanager_url,
            rule_files=config.prometheus_rules,
        )

    @property
    def isvcs(self) -> dict[str, InferenceServiceRuntime]:
        """The applied InferenceServices, by name."""
        return self.plane.isvcs

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Resume from the state file, then pass until ``stop`` is set; stop what it started."""
        forkserver.prewarm()  # the model servers' imports load while the first sync runs
        self.plane.predictions.start()
        self.resume()
        next_poll = 0.0
        try:
            while not stop.is_set():
                if self._refresh_asked or time.monotonic() >= next_poll:
                    self._refresh_asked = False
                    self.poll()
                    next_poll = time.monotonic() + self.config.poll_interval
                busy = self.reconcile()
                own = self.plane.scrape_targets(self.graphs.router_ports())
                self.scrape.update(own.union(peer_targets(self.config.scrape_peers)))
                self.save()
                idle = max(0.05, next_poll - time.monotonic())
                self.wake.wait(min(_BUSY_PASS_SECONDS, idle) if busy else idle)
                self.wake.clear()
        finally:
            self.shutdown()

    def refresh(self) -> None:
        """Fetch the branch at once rather than at the next poll (safe in a signal handler)."""
        self._refresh_asked = True
        self.wake.set()

    def poll(self) -> None:
        """Fetch the branch; sync a tip that is neither synced nor already failed."""
        app = self.application
        try:
            self.workspace.sync()
            head = self.workspace.remote_sha(self.config.branch)
        except SluiceError as exc:
            sync.set_comparison(app, None, exc.message)
            return
        if head is None:
            sync.set_comparison(app, None, f"branch {self.config.branch} does not exist")
            return
        operation = app["status"].get("operationState", {})
        tried = operation.get("operation", {}).get("sync", {}).get("revision")
        synced = operation.get("syncResult", {}).get("revision")
        if head in (synced, tried) and operation.get("phase") != "Running":
            sync.set_comparison(app, head)
            if self._profile_sha != head:  # a restarted runtime resumes what it synced
                self._load_metrics_profile(head)
            return
        self.sync_to(head)

    def sync_to(self, sha: str) -> None:
        """Render the overlay at ``sha`` and apply each InferenceService and InferenceGraph the
        API server admits.

        A render that fails applies nothing. One object refused (the CRD's schema, KServe's
        webhook) fails only its own sync: the others are applied, and it keeps what it ran
        before.
        """
        app = self.application
        sync.operation_started(app, sha, utc_now())
        try:
            documents = sync.render_at(
                Path(self.workspace.repo.git_dir), sha, self.config.overlay, (_ISVC, _GRAPH)
            )
        except SluiceError as exc:
            _log.warning("sync of %s failed: %s", sha[:12], exc.message)
            sync.operation_failed(app, sha, utc_now(), exc.message)
            return
        self._load_metrics_profile(sha)
        isvcs = [d for d in documents if d.get("kind") == _ISVC]
        results = [self._apply_admitted(admission) for admission in admit(isvcs)]
        for result in results:
            if result.refused:
                _log.warning("sync of %s: %s", sha[:12], result.message)
                continue
            try:
                shadow_request(self.isvcs[result.name].document)
            except SluiceError as exc:  # KServe takes any annotation: only the mirror stops
                _log.warning("%s; nothing is mirrored", exc.message)
        graphs = [self._apply_graph(d) for d in documents if d.get("kind") == _GRAPH]
        for name in set(self.isvcs) - {r.name for r in results}:  # pruned from Git
            self.plane.remove(name)
        for name in set(self.graphs.graphs) - {r.name for r in graphs}:
            self.graphs.remove(name)
        results += graphs
        applied = [r.name for r in results if not r.refused]
        _log.info("synced %s: %s", sha[:12], ", ".join(applied) or "nothing")
        sync.operation_finished(app, sha, utc_now(), results)

    def _apply_admitted(self, admission: Admission) -> sync.ResourceResult:
        """Apply one InferenceService of a sync, or say why the API server refused it."""
        name, namespace = admission.name, admission.namespace
        if admission.plan is None:
            if name in self.isvcs:
                self.isvcs[name].refused = admission.refused
            return sync.ResourceResult(name, namespace, admission.refused, refused=True)
        before = self.isvcs.get(name)
        verb = "created" if before is None else "configured"
        if before is not None and before.document == admission.document:
            verb = "unchanged"
        self.plane.apply(admission.document, admission.plan)
        return sync.ResourceResult(name, namespace, f"inferenceservice.{_GROUP}/{name} {verb}")

    def _apply_graph(self, document: dict[str, Any]) -> sync.ResourceResult:
        """Apply one InferenceGraph of a sync, or say why the API server refused it."""
        name, namespace = str(document["metadata"]["name"]), namespace_of(document)
        refusal = graph_refusal(document)
        if refusal:
            _log.warning("%s", refusal)
            self.graphs.refuse(name, refusal)
            return sync.ResourceResult(name, namespace, refusal, refused=True, kind=_GRAPH)
        verb = self.graphs.apply(document)
        message = f"inferencegraph.{_GROUP}/{name} {verb}"
        return sync.ResourceResult(name, namespace, message, kind=_GRAPH)

    def _load_metrics_profile(self, sha: str) -> None:
        """Export request metrics under the profile of the environment's policy at ``sha``,
        as the queue-proxies of a cluster of that Knative version would."""
        path = f"{self.config.overlay}/{ENVIRONMENT_FILE}"
        self._profile_sha = sha
        try:
            text = self.workspace.repo.git.show(f"{sha}:{path}")
            config = parse_environment(text, source=path, environment=self.config.env)
        except GitCommandError:
            profile = resolve_profile(DEFAULT_PROFILE)  # no policy: the defaults
        except SluiceError as exc:
            _log.warning("%s; request metrics keep their names", exc.message)
            return
        else:
            profile = config.rollout.gates.profile
        if profile != self.plane.metrics_profile:
            _log.info("request metrics: %s", profile.latency)
        self.plane.set_metrics_profile(profile)
        self.graphs.set_metrics_profile(profile)

    def reconcile(self) -> bool:
        """One KServe pass over every InferenceService, then every InferenceGraph; True while
        a revision loads."""
        busy, healths = self.plane.reconcile()
        graphs = self.graphs.reconcile(isvc.to_object() for isvc in self.isvcs.values())
        sync.application_health(
            self.application, healths, live=self.isvcs, graphs=graphs,
            live_graphs=self.graphs.graphs,
        )  # fmt: skip
        return busy

    # -- state -------------------------------------------------------------------------------

    def save(self) -> None:
        """Write everything a restarted runtime or ``sluice local status`` needs."""
        document = runtime_document(
            remote=self.config.remote, env=self.config.env, application=self.application,
            plane=self.plane, graphs=self.graphs,
        )  # fmt: skip
        write_json(self.state_file, document)

    def resume(self) -> None:
        """Load the last saved state: stop orphaned servers, reopen routers on their ports."""
        saved = read_json(self.state_file)
        if not saved:
            return
        for revision, info in (saved.get("servers") or {}).items():
            if stop_pid(info.get("pid"), self.plane.servers.marker(revision)):
                _log.info("stopped the orphaned server of %s", revision)
        self.application = saved.get("application") or self.application
        self.plane.ports = {k: int(v) for k, v in (saved.get("ports") or {}).items()}
        resume_inference_services(self.plane, saved)
        resume_graphs(self.graphs, saved)
        resumed = [*self.isvcs, *(f"{_GRAPH} {name}" for name in self.graphs.graphs)]
        _log.info("resumed %s", ", ".join(resumed) or "nothing")

    def shutdown(self) -> None:
        """Stop every router and model server, and say so in the state file."""
        self.graphs.shutdown()
        self.plane.shutdown()
        self.save()


def _parse(argv: list[str] | None) -> RuntimeConfig:
    parser = argparse.ArgumentParser(prog="python -m controller.local.runtime")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--remote", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--branch", default="main")
    parser.add_argument("--poll-interval", type=float, default=3.0)
    parser.add_argument("--progress-deadline", type=float, default=600.0)
    parser.add_argument("--port-base", type=int)
    parser.add_argument("--mlflow-tracking-uri")
    parser.add_argument("--prometheus-url")
    parser.add_argument("--prometheus-config", type=Path)
    parser.add_argument("--alertmanager-url")
    parser.add_argument(
        "--prometheus-rules",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a rule file the Prometheus config names (repeatable)",
    )
    parser.add_argument(
        "--propagate-header",
        dest="propagate_headers",
        action="append",
        metavar="PATTERN",
        help="a header pattern the graphs' routers pass on to their steps (repeatable; "
        "default: Authorization, as KServe's router.headers.propagate)",
    )
    parser.add_argument(
        "--scrape-peer",
        dest="scrape_peers",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="the state directory of another runtime of the stack, whose scrape targets the "
        "Prometheus config keeps (repeatable)",
    )
    args = parser.parse_args(argv)
    values = {**vars(args), "prometheus_rules": tuple(args.prometheus_rules)}
    values["scrape_peers"] = tuple(args.scrape_peers)
    values["propagate_headers"] = tuple(args.propagate_headers or DEFAULT_PROPAGATED_HEADERS)
    return RuntimeConfig(**values)


def main(argv: list[str] | None = None) -> int:
    """Run the runtime until SIGTERM or SIGINT; exit 0 after a clean stop."""
    config = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runtime = LocalRuntime(config)

        def stopping(*_: object) -> None:
            stop.set()
            runtime.wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stopping)
        # Before run() saves this pid to runtime.json, where the controller finds it.
        signal.signal(signal.SIGUSR1, lambda *_: runtime.refresh())
        runtime.run(stop)
    except SluiceError as exc:
        _log.error("%s", exc.message)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
