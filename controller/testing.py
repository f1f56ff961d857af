"""In-memory fakes of Sluice's ports, for tests that run many rollouts in seconds.

Why they exist: the rollout promises that a pass killed at any line and run again reaches the
same end, without a duplicate or missing commit. Believing that takes many rollouts with many
crash points, and the real stack (Argo CD, KServe and Knative, model servers, Prometheus,
Locust) needs about a minute per rollout. These fakes answer a pass's questions at once and
deterministically, and from the same pure logic the local target runs:

- :class:`InstantCluster` (:class:`~controller.ports.Target`) plays Argo CD and KServe: it
  reads the environment's branch from a real Git repository, renders the overlay with
  ``kubectl kustomize`` as Argo CD does, makes a revision whenever the predictor template
  changes (``canaryTrafficPercent`` alone only moves traffic), and computes the
  InferenceService's ``status`` with :func:`controller.local.kserve_status.reconcile_status`.
  It syncs the tip at once or after a number of :meth:`~InstantCluster.observe` calls, and a
  revision becomes ready (or, for a version that cannot load, fails) after a number of them.
  It models KServe's Serverless mode only.
- :class:`ScriptedMetrics` (:class:`~controller.ports.MetricsSource`) answers the built-in
  PromQL of :mod:`controller.gates.prometheus_checks` with Knative-shaped samples, and
  :class:`ScriptedLoad` (:class:`~controller.ports.LoadGenerator`) answers load tests with
  Locust-shaped reports; both derive the numbers from the :class:`Behaviour` of the version a
  revision serves, so the real gates and the real judge decide on them.
- :class:`RecordingNotifier` keeps the events it is sent; :class:`ManualClock` is a clock a
  test moves; :class:`MemoryLeaseStore` (:class:`~controller.ports.LeaseStore`) keeps leases
  in a dict, with the compare-and-swap the Git one gets from the remote.

What they are not: a replacement for the real services. The backends (MLflow, Git, the local
target's model servers, Prometheus, Locust, Argo CD and a cluster) are exercised for real by
the integration tests (``tests/test_rollout_local.py`` and each backend's tests); these fakes
model only what a rollout pass reads, so they cannot show that a real KServe or Prometheus
behaves as they do. Git and the registry have no fake here on purpose: a bare repository on
disk and a real MLflow server serve well enough, and the rollout's guarantees are about them.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

from controller.analysis_types import LatencyHistogram, LoadPlan, LoadReport, MetricSample
from controller.backends.kubernetes_target import observation_from
from controller.errors import MetricsUnavailable, RemoteUnavailable, SluiceError
from controller.gates.metrics_profile import KNATIVE_OTEL, MetricsProfile
from controller.lease import Lease
from controller.local import sync
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
from controller.target_types import TargetObservation

__all__ = [
    "FAILING",
    "HEALTHY",
    "LATENCY_BOUNDS_MS",
    "SLOW",
    "UNLOADABLE",
    "Behaviour",
    "Behaviours",
    "InstantCluster",
    "ManualClock",
    "MemoryLeaseStore",
    "MemoryRequestCounts",
    "Notification",
    "RecordingNotifier",
    "ScriptedLoad",
    "ScriptedMetrics",
]

#: Upper bounds (ms) of the latency histograms the fakes report (a subset of Knative's).
LATENCY_BOUNDS_MS = (5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 5000.0)
_SIGMA = 0.5  # spread of the log-normal latencies: p99 is about 3.2 times the median
_NORMAL = NormalDist()


# -- what a version does when served ------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How a model version behaves once served; every fake answer is derived from it.

    Latencies are log-normal around ``median_ms``. ``cold_runs`` load tests against each new
    revision of the version answer only a handful of requests (a cold start), too few to judge.
    """

    loads: bool = True
    error_ratio: float = 0.0
    median_ms: float = 40.0
    cold_runs: int = 0

    def latency_quantile(self, q: float) -> float:
        """The ``q``-quantile (0 < q < 1) of the latency, in milliseconds."""
        return self.median_ms * math.exp(_SIGMA * _NORMAL.inv_cdf(q))

    def latency_share(self, bound_ms: float) -> float:
        """The share of requests answered within ``bound_ms``."""
        if math.isinf(bound_ms):
            return 1.0
        return _NORMAL.cdf((math.log(bound_ms) - math.log(self.median_ms)) / _SIGMA)

    def cumulative_counts(self, requests: int) -> list[tuple[float, int]]:
        """Prometheus-style cumulative ``le`` buckets of ``requests`` requests (+Inf last)."""
        bounds = (*LATENCY_BOUNDS_MS, math.inf)
        return [(b, round(requests * self.latency_share(b))) for b in bounds]

    def histogram(self, requests: int) -> LatencyHistogram:
        """Per-bucket counts of ``requests`` requests."""
        cumulative = self.cumulative_counts(requests)
        counts, previous = [], 0
        for _, running in cumulative:
            counts.append(running - previous)
            previous = running
        return LatencyHistogram(tuple(b for b, _ in cumulative), tuple(counts))


HEALTHY = Behaviour()
#: Fails a fifth of its requests (answers 5xx), as ``models.faulty`` with ``--error-rate 0.2``.
FAILING = Behaviour(error_ratio=0.2)
#: About 300 ms slower than a healthy version.
SLOW = Behaviour(median_ms=340.0)
#: Its model server never loads: the revision fails.
UNLOADABLE = Behaviour(loads=False)


def _default_markers() -> dict[str, Behaviour]:
    return {"unloadable": UNLOADABLE, "bad": FAILING, "slow": SLOW}


@dataclass(frozen=True)
class Behaviours:
    """The behaviour of a storage URI: that of the first marker it contains, else ``default``.

    The default markers make ``file:///models/bad-v3`` failing, ``…/slow…`` slow and
    ``…/unloadable…`` unloadable; a test with registry-made URIs names its own markers (a
    distinctive part of each version's URI).
    """

    markers: Mapping[str, Behaviour] = field(default_factory=_default_markers)
    default: Behaviour = HEALTHY

    def of(self, uri: str) -> Behaviour:
        """The behaviour of the version served from ``uri``."""
        return next((b for marker, b in self.markers.items() if marker in uri), self.default)

    def with_marker(self, marker: str, behaviour: Behaviour) -> Behaviours:
        """These behaviours, and ``behaviour`` for URIs containing ``marker`` (checked first)."""
        return Behaviours({marker: behaviour, **self.markers}, self.default)


# -- Argo CD and KServe --------------------------------------------------------------------------


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
class _Service:
    document: dict[str, Any]
    records: list[_RevisionRecord] = field(default_factory=list)
    counter: int = 0
    generation: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    traffic: tuple[TrafficTarget, ...] = ()

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.document["metadata"].get("namespace") or "default")

    def to_object(self) -> dict[str, Any]:
        metadata = dict(self.document.get("metadata", {}), generation=self.generation)
        return {
            "apiVersion": self.document.get("apiVersion", "serving.kserve.io/v1beta1"),
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": self.document.get("spec", {}),
            "status": self.status,
        }


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
    a clone's ``.git``). Serverless mode only: revisions are Knative's. Each
    :meth:`observe` is one Argo CD poll and one KServe reconcile: a new tip of ``branch`` is
    synced after ``sync_after`` further calls (0: at once), and a new revision is ready after
    ``ready_after`` calls, or failed if its version does not load (:class:`Behaviours`).
    Tag routes are ``http://NAME.NAMESPACE.fake/_tag/TAG``; :meth:`route` tells the other
    fakes which revision answers one.
    """

    def __init__(
        self,
        git_dir: Path,
        *,
        branch: str = "main",
        behaviours: Behaviours | None = None,
        sync_after: int = 0,
        ready_after: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.git_dir = Path(git_dir)
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
        return f"InstantCluster(git_dir={str(self.git_dir)!r}, branch={self.branch!r})"

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
            app = sync.new_application(name, str(self.git_dir), self.branch, overlay)
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

    def _poll(self, name: str, env: _Environment) -> None:
        app = env.application
        tip = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}")
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
        tree = self._git("rev-parse", f"{sha}^{{tree}}")
        if tree is None:
            return sync.render_at(self.git_dir, sha, overlay)
        with _RENDERED_LOCK:
            rendered = _RENDERED.get((tree, overlay))
        if rendered is None:
            rendered = sync.render_at(self.git_dir, sha, overlay)
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


# -- Prometheus ----------------------------------------------------------------------------------

_LABEL = re.compile(r'(\w+)\s*(=|!=)\s*"([^"]*)"')
_QUANTILE = re.compile(r"^histogram_quantile\(\s*([0-9.]+)\s*,")


class ScriptedMetrics:
    """A :class:`~controller.ports.MetricsSource` answering the built-in PromQL shapes.

    A revision in its service's traffic answered ``requests`` requests in any window, with the
    error ratio and latencies of its version's :class:`Behaviour`; one outside the traffic
    answered none (empty results). A query of another shape (a custom check) has no data. Set
    :attr:`outage` to make every query fail as an unreachable Prometheus does. Series are
    named as ``profile`` names them (current Knative's by default); a query for other names
    has no data, as on a cluster whose Knative exports the other shape.
    """

    def __init__(
        self,
        cluster: InstantCluster,
        *,
        behaviours: Behaviours | None = None,
        requests: int = 2000,
        profile: MetricsProfile = KNATIVE_OTEL,
    ) -> None:
        self.cluster = cluster
        self.profile = profile
        self.behaviours = behaviours or cluster.behaviours
        self.requests = requests
        self.outage = False
        #: Every query received, in order.
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        """Evaluate ``promql`` against the scripted traffic of the revision it selects."""
        self.queries.append(promql)
        if self.outage:
            raise MetricsUnavailable("Prometheus at http://prometheus.fake is unreachable")
        profile = self.profile
        labels = {k: v for k, op, v in _LABEL.findall(promql) if op == "="}
        uri = self.cluster.serving(
            labels.get(profile.namespace_label, ""),
            labels.get(profile.configuration_label, ""),
            labels.get(profile.revision_label, ""),
        )
        if uri is None:
            return []
        behaviour = self.behaviours.of(uri)
        errors = round(self.requests * behaviour.error_ratio)
        quantile = _QUANTILE.match(promql)
        buckets, requests = f"{profile.latency}_bucket{{", f"{profile.requests}{{"
        if quantile and f"rate({buckets}" in promql:
            # The builtin query scales a histogram in seconds to milliseconds itself.
            return [MetricSample({}, behaviour.latency_quantile(float(quantile.group(1))))]
        if f"increase({buckets}" in promql:
            scale = profile.milliseconds_per_unit
            return [
                MetricSample({"le": "+Inf" if math.isinf(b) else f"{b / scale:g}"}, float(count))
                for b, count in behaviour.cumulative_counts(self.requests)
            ]
        if "or vector(0)" in promql and f"rate({requests}" in promql:
            return [MetricSample({}, 100.0 * (self.requests - errors) / self.requests)]
        if promql.startswith(f"sum(increase({requests}"):
            five_xx = profile.errors_matcher() in promql
            return [MetricSample({}, float(errors if five_xx else self.requests))]
        return []


# -- Locust --------------------------------------------------------------------------------------


class ScriptedLoad:
    """A :class:`~controller.ports.LoadGenerator` whose reports follow the routed version.

    A run sends ``requests_per_second`` for the plan's duration to the revision behind the
    plan's tag route (up to the plan's ``max_requests``, where Locust stops a smoke), failing
    and taking as long as its :class:`Behaviour` says; a route no revision answers fails every
    request, as Locust against a dead URL does. A cold revision answers ``COLD_REQUESTS`` in
    each of its first ``cold_runs`` load tests bounded by their duration; a smoke, bounded by
    its request count within a long timeout, gets its requests and leaves it as cold.
    Thread-safe: the analyzer runs the canary's and the primary's load at the same time.
    """

    #: Requests a cold revision answers in one test.
    COLD_REQUESTS = 5

    def __init__(
        self,
        cluster: InstantCluster,
        *,
        behaviours: Behaviours | None = None,
        requests_per_second: float = 40.0,
    ) -> None:
        self.cluster = cluster
        self.behaviours = behaviours or cluster.behaviours
        self.requests_per_second = requests_per_second
        self._runs: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Every plan run, in order.
        self.plans: list[LoadPlan] = []

    def run(self, plan: LoadPlan) -> LoadReport:
        """What Locust would have measured on ``plan``'s route."""
        seconds = float(math.ceil(plan.duration_seconds))
        requests = max(1, round(self.requests_per_second * seconds))
        if plan.max_requests is not None and plan.max_requests < requests:
            requests = plan.max_requests
            seconds = float(math.ceil(requests / self.requests_per_second))
        routed = self.cluster.route(plan.url)
        with self._lock:
            self.plans.append(plan)
            if routed is None:
                return LoadReport(requests, requests, plan.duration_seconds, None, None, None)
            revision, uri = routed
            runs = self._runs.get(revision, 0) + (plan.max_requests is None)
            self._runs[revision] = runs
        behaviour = self.behaviours.of(uri)
        if plan.max_requests is None and runs <= behaviour.cold_runs:
            requests = self.COLD_REQUESTS
        return LoadReport(
            requests=requests,
            failures=round(requests * behaviour.error_ratio),
            duration_seconds=seconds,
            p50_ms=behaviour.latency_quantile(0.50),
            p95_ms=behaviour.latency_quantile(0.95),
            p99_ms=behaviour.latency_quantile(0.99),
            latency=behaviour.histogram(requests),
        )


# -- notifications and time ----------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One event a notifier was sent."""

    title: str
    text: str
    severity: str


@dataclass
class RecordingNotifier:
    """A :class:`~controller.ports.Notifier` that keeps every event, in order."""

    events: list[Notification] = field(default_factory=list)

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Record the event."""
        self.events.append(Notification(title, text, severity))


@dataclass
class ManualClock:
    """A clock that moves only when told (``Reconciler.clock``, ``Analyzer.sleep``).

    ``on_change`` is called with the new time after every move, for whatever must follow the
    clock (a test points git's commit dates at it, so commit times and the clock agree).
    """

    now: float
    on_change: Callable[[float], None] = lambda _: None

    def __post_init__(self) -> None:
        self.on_change(self.now)

    def __call__(self) -> float:
        """The current time, in seconds since the epoch."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += max(0.0, seconds)
        self.on_change(self.now)

    def sleep(self, seconds: float) -> None:
        """Sleep as ``time.sleep`` would, without waiting."""
        self.advance(seconds)


class MemoryRequestCounts:
    """A :class:`~controller.ports.LiveRequestCounts` whose answers the test sets:
    ``counts[revision] = {code: n}``; with :attr:`outage` set it fails as a router that does
    not answer. Every question is recorded as (environment, inference service, since)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, int]] = {}
        self.outage = False
        self.asked: list[tuple[str, str, float]] = []

    def request_counts(
        self, environment: str, inference_service: str, since: float
    ) -> dict[str, dict[int, int]]:
        self.asked.append((environment, inference_service, since))
        if self.outage:
            raise RemoteUnavailable("the router at http://router.fake did not give its counts")
        return {revision: dict(codes) for revision, codes in self.counts.items()}


class MemoryLeaseStore:
    """A :class:`~controller.ports.LeaseStore` in memory, shared by the controllers of a test
    (thread-safe); every swap is recorded, in order, as (name, holder or None)."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[Lease, str]] = {}
        self._versions = 0
        self._lock = threading.Lock()
        self.swaps: list[tuple[str, str | None]] = []

    def read(self, name: str) -> tuple[Lease, str] | None:
        with self._lock:
            return self._records.get(name)

    def swap(self, name: str, expected: str | None, lease: Lease | None) -> bool:
        with self._lock:
            current = self._records.get(name)
            if (current[1] if current else None) != expected:
                return False
            if lease is None:
                self._records.pop(name, None)
            else:
                self._versions += 1
                self._records[name] = (lease, str(self._versions))
            self.swaps.append((name, lease.holder if lease else None))
            return True
