"""Argo CD and KServe in :meth:`InstantCluster.observe` calls: a Target that syncs and serves.

It reads the environment's branch from a real Git repository, renders the overlay with
``kubectl kustomize`` as Argo CD does, makes a revision whenever the predictor template changes
(``canaryTrafficPercent`` alone only moves traffic), and computes the InferenceService's
``status`` with :func:`controller.local.kserve_status.reconcile_status`.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.backends.kubernetes_target import observation_from
from controller.errors import ManifestInvalid, SluiceError
from controller.local import sync
from controller.local.isvc_object import AppliedInferenceService
from controller.local.kserve_status import (
    PredictorSpec,
    PreviousStatus,
    Revision,
    RevisionState,
    TrafficTarget,
    effective_split,
    reconcile_status,
)
from controller.local.revisions import predictor_fingerprint, predictor_spec, storage_uri
from controller.manifests.render import render_overlay
from controller.target_types import TargetObservation
from controller.testing.behaviours import Behaviour, Behaviours
from controller.testing.memory_remote import MemoryRemote

__all__ = ["InstantCluster"]


@dataclass
class _RevisionRecord:
    name: str
    fingerprint: str
    storage_uri: str
    behaviour: Behaviour
    passes: int = 0
    state: RevisionState = RevisionState.LOADING

    def advance(self, ready_after: int) -> Revision:
        """One KServe pass: the revision ages; it loads (or fails) after ``ready_after``."""
        self.passes += 1
        if self.state is RevisionState.LOADING and self.passes > ready_after:
            self.state = RevisionState.READY if self.behaviour.loads else RevisionState.FAILED
        if self.state is RevisionState.FAILED:
            message = f"Container failed with: ModelLoadFailed: cannot load {self.storage_uri}"
            return Revision(self.name, RevisionState.FAILED, message, exit_code=1)
        return Revision(self.name, self.state)


@dataclass
class _Service(AppliedInferenceService):
    document: dict[str, Any]
    records: list[_RevisionRecord] = field(default_factory=list)
    counter: int = 0
    generation: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    traffic: tuple[TrafficTarget, ...] = ()


@dataclass
class _Environment:
    application: dict[str, Any]
    synced: str | None = None
    tried: str | None = None
    pending: str | None = None
    countdown: int = 0
    services: dict[str, _Service] = field(default_factory=dict)


# What ``kubectl kustomize`` rendered, by (tree id, overlay). A tree id names the content, so
# an entry is right in any repository; rollouts of the same versions repeat the same trees,
# and kustomize (a fifth of a second a run) then runs once per distinct tree.
_RENDERED: dict[tuple[str, str], list[dict[str, Any]]] = {}
_RENDERED_LOCK = threading.Lock()


class InstantCluster:
    """A :class:`~controller.ports.Target` that syncs and serves in :meth:`observe` calls.

    ``git_dir`` is the git directory of the repository Argo CD would watch (a bare remote, or
    a clone's ``.git``), or the :class:`~controller.testing.MemoryRemote` it would watch
    a clone's ``.git``). Serverless mode only: revisions are Knative's. Each
    :meth:`observe` is one Argo CD poll and one KServe reconcile: a new tip of ``branch`` is
    synced after ``sync_after`` further calls (0: at once), and a new revision is ready after
    ``ready_after`` calls, or failed if its version does not load (:class:`Behaviours`).
    Tag routes are ``http://NAME.NAMESPACE.fake/_tag/TAG``; :meth:`route` tells the other
    fakes which revision answers one.
    """

    def __init__(
        self,
        git_dir: Path | MemoryRemote,
        *,
        branch: str = "main",
        behaviours: Behaviours | None = None,
        sync_after: int = 0,
        ready_after: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.memory = git_dir if isinstance(git_dir, MemoryRemote) else None
        self.git_dir = Path(git_dir) if not isinstance(git_dir, MemoryRemote) else Path()
        self.branch = branch
        self.behaviours = behaviours or Behaviours()
        self.sync_after = sync_after
        self.ready_after = ready_after
        self._clock = clock
        self._environments: dict[str, _Environment] = {}
        self._lock = threading.Lock()
        #: Every sync applied, as (environment, commit), for assertions.
        self.synced: list[tuple[str, str]] = []
        #: Every environment a sync was asked for (:meth:`request_sync`), in order.
        self.sync_requests: list[str] = []

    def __repr__(self) -> str:
        source = self.memory.url if self.memory else str(self.git_dir)
        return f"InstantCluster(git_dir={source!r}, branch={self.branch!r})"

    # -- the Target protocol -------------------------------------------------------------------

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        """One Argo CD poll and KServe reconcile, then the InferenceService as a target reports."""
        with self._lock:
            env = self._environment(environment)
            self._poll(environment, env)
            service = env.services.get(inference_service)
            if service is None or not service.records:
                return TargetObservation(exists=False)
            self._reconcile(service)
            return observation_from(service.to_object(), env.application)

    def request_sync(self, environment: str) -> None:
        """Record the request (a :class:`~controller.ports.SyncTrigger`); every :meth:`observe`
        polls Git anyway."""
        with self._lock:
            self.sync_requests.append(environment)

    # -- what the other fakes ask --------------------------------------------------------------

    def route(self, url: str) -> tuple[str, str] | None:
        """(revision, storage URI) answering a tag route's URL, or None if none does."""
        with self._lock:
            for service in self._services():
                for target in service.traffic:
                    if target.url and target.url.rstrip("/") == url.rstrip("/"):
                        return self._located(service, target.revision_name)
        return None

    def split(self, environment: str, inference_service: str) -> dict[str, int]:
        """Percent of requests each storage URI receives now (as of the last observe)."""
        with self._lock:
            env = self._environments.get(environment)
            service = env.services.get(inference_service) if env else None
            if service is None:
                return {}
            uris = {r.name: r.storage_uri for r in service.records}
            split: dict[str, int] = {}
            for revision, percent in effective_split(service.traffic).items():
                uri = uris.get(revision, revision)
                split[uri] = split.get(uri, 0) + percent
            return split

    def serving(self, namespace: str, configuration: str, revision: str) -> str | None:
        """The storage URI of ``revision`` if it is in its service's traffic (it has requests)."""
        with self._lock:
            for service in self._services():
                if (service.namespace, f"{service.name}-predictor") != (namespace, configuration):
                    continue
                if any(t.revision_name == revision for t in service.traffic):
                    found = self._located(service, revision)
                    return found[1] if found else None
        return None

    # -- Argo CD -------------------------------------------------------------------------------

    def _environment(self, name: str) -> _Environment:
        env = self._environments.get(name)
        if env is None:
            overlay = f"manifests/overlays/{name}"
            url = self.memory.url if self.memory else str(self.git_dir)
            app = sync.new_application(name, url, self.branch, overlay)
            env = self._environments[name] = _Environment(app)
        return env

    def _git(self, *args: str) -> str | None:
        done = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def _tip(self) -> str | None:
        """The branch's tip as git stores it (its loose ref file, else ``packed-refs``), read
        without a git process: Argo CD polls at every observe, and a ``rev-parse`` per poll
        was a sixth of the processes of a chaos run. Anything else asks git."""
        name = f"refs/heads/{self.branch}"
        try:
            loose: str | None = (self.git_dir / name).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            loose = None
        except (OSError, UnicodeDecodeError):
            loose = "?"
        if loose is not None and _is_sha(loose):
            return loose
        if loose is None and not (self.git_dir / "reftable").exists():
            try:
                packed = (self.git_dir / "packed-refs").read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            for line in packed.splitlines():
                sha, _, ref = line.partition(" ")
                if ref == name and _is_sha(sha):
                    return sha
            return None
        return self._git("rev-parse", "--verify", "--quiet", name)

    def _poll(self, name: str, env: _Environment) -> None:
        app = env.application
        tip = self.memory.tip(self.branch) if self.memory is not None else self._tip()
        if tip is None:
            sync.set_comparison(app, None, f"branch {self.branch} does not exist")
            return
        if tip in (env.synced, env.tried):
            sync.set_comparison(app, tip)
            return
        if tip != env.pending:
            env.pending, env.countdown = tip, self.sync_after
        if env.countdown > 0:
            env.countdown -= 1
            sync.set_comparison(app, tip)
            return
        self._sync_to(name, env, tip)

    def _sync_to(self, name: str, env: _Environment, sha: str) -> None:
        app, now = env.application, self._now()
        sync.operation_started(app, sha, now)
        env.tried, env.pending = sha, None
        try:
            documents = self._render(sha, f"manifests/overlays/{name}")
            plans = [(d, predictor_fingerprint(d), storage_uri(d)) for d in documents]
        except SluiceError as exc:
            sync.operation_failed(app, sha, now, exc.message)
            return
        for document, fingerprint, uri in plans:
            self._apply(env, document, fingerprint, uri)
        names = [str(d["metadata"]["name"]) for d, _, _ in plans]
        for gone in set(env.services) - set(names):
            del env.services[gone]
        env.synced = sha
        self.synced.append((name, sha))
        sync.operation_succeeded(app, sha, now, names)

    def _render(self, sha: str, overlay: str) -> list[dict[str, Any]]:
        render: Callable[[], list[dict[str, Any]]]
        if self.memory is not None:
            files = self.memory.commits[sha].files
            content = repr(sorted(files.items())).encode()
            tree: str | None = "memory:" + hashlib.sha1(content, usedforsecurity=False).hexdigest()
            render = lambda: _render_files(files, sha, overlay)  # noqa: E731
        else:
            tree = self._git("rev-parse", f"{sha}^{{tree}}")
            render = lambda: sync.render_at(self.git_dir, sha, overlay)  # noqa: E731
        if tree is None:
            return render()
        with _RENDERED_LOCK:
            rendered = _RENDERED.get((tree, overlay))
        if rendered is None:
            rendered = render()
            with _RENDERED_LOCK:
                _RENDERED[(tree, overlay)] = rendered
        return copy.deepcopy(rendered)

    def _apply(self, env: _Environment, document: dict[str, Any], fp: str, uri: str) -> None:
        name = str(document["metadata"]["name"])
        service = env.services.get(name)
        if service is None:
            service = env.services[name] = _Service(document)
        if service.generation == 0 or service.document.get("spec") != document.get("spec"):
            service.generation += 1
        service.document = document
        if not service.records or service.records[-1].fingerprint != fp:
            service.counter += 1
            revision = f"{name}-predictor-{service.counter:05d}"
            behaviour = self.behaviours.of(uri)
            service.records.append(_RevisionRecord(revision, fp, uri, behaviour))

    # -- KServe --------------------------------------------------------------------------------

    def _reconcile(self, service: _Service) -> None:
        revisions = [record.advance(self.ready_after) for record in service.records]
        spec: PredictorSpec = predictor_spec(service.document)
        result = reconcile_status(
            service.name,
            spec,
            revisions,
            PreviousStatus.from_dict(service.status),
            now=self._now(),
            namespace=service.namespace,
            url=f"http://{service.name}.{service.namespace}.fake",
            generation=service.generation,
        )
        service.status, service.traffic = result.status, result.traffic
        keep = {result.latest_created, result.latest_ready}
        keep |= {result.rollout.latest, result.rollout.previous}
        keep |= {t.revision_name for t in result.traffic}
        service.records = [r for r in service.records if r.name in keep]

    def _services(self) -> list[_Service]:
        return [s for env in self._environments.values() for s in env.services.values()]

    @staticmethod
    def _located(service: _Service, revision: str) -> tuple[str, str] | None:
        record = next((r for r in service.records if r.name == revision), None)
        return (record.name, record.storage_uri) if record else None

    def _now(self) -> str:
        return datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _render_files(files: Mapping[str, str], sha: str, overlay: str) -> list[dict[str, Any]]:
    """What :func:`controller.local.sync.render_at` renders, from a MemoryRemote's tree."""
    with tempfile.TemporaryDirectory(prefix="sluice-sync-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        directory = Path(tmp) / overlay
        if not directory.is_dir():
            raise ManifestInvalid(
                f"{overlay} does not exist at {sha[:12]}; create the overlay or fix --env"
            )
        documents = render_overlay(directory, tree=Path(tmp))
    return [d for d in documents if d.get("kind") == "InferenceService"]
