"""In-memory fakes of Sluice's ports, for tests that run many rollouts in seconds.

Why they exist: the rollout promises that a pass killed at any line and run again reaches the
same end, without a duplicate or missing commit. Believing that takes many rollouts with many
crash points, and the real stack (Argo CD, KServe and Knative, model servers, Prometheus,
Locust) needs about a minute per rollout. These fakes answer a pass's questions at once and
deterministically, and from the same pure logic the local target runs. One module per fake:

- :class:`InstantCluster` (:mod:`.cluster`, a :class:`~controller.ports.Target`) plays Argo CD
  and KServe: it reads the environment's branch from a real Git repository, renders the overlay
  with ``kubectl kustomize`` as Argo CD does, makes a revision whenever the predictor template
  changes, and computes the InferenceService's ``status`` with
  :func:`controller.local.kserve_status.reconcile_status`. It syncs the tip at once or after a
  number of :meth:`~InstantCluster.observe` calls, and a revision becomes ready (or, for a
  version that cannot load, fails) after a number of them. Serverless mode only.
- :class:`ScriptedMetrics` (:mod:`.metrics`, a :class:`~controller.ports.MetricsSource`)
  answers the built-in PromQL of :mod:`controller.gates.prometheus_checks` with Knative-shaped
  samples, and :class:`ScriptedLoad` (:mod:`.load`, a :class:`~controller.ports.LoadGenerator`)
  answers load tests with Locust-shaped reports; both derive the numbers from the
  :class:`Behaviour` (:mod:`.behaviours`) of the version a revision serves, so the real gates
  and the real judge decide on them. :class:`AnsweredMetrics` answers any PromQL by a text it
  contains, for checks of one's own (a soak's).
- :class:`MemoryReleaseRepository` (:mod:`.release_repository`, a
  :class:`~controller.ports.ReleaseRepository`, on a :class:`MemoryRemote` of
  :mod:`.memory_remote`) is Git in memory: fetched snapshots,
  fast-forward-only pushes that lose races and retry, first-parent history, and faults
  (unreachable, refused, lost races, a death on either side of a push) raising what
  :class:`~controller.backends.git_repo.GitWorkspace` raises; the contract tests hold both to
  the same behaviour.
- :class:`MemoryRegistry` (:mod:`.registry`) is MLflow's registry in dicts: the
  :class:`~controller.ports.RolloutRegistry`, :class:`~controller.ports.ProposalRegistry`,
  :class:`~controller.ports.AliasIndex` and :class:`~controller.ports.ModelTagStore`, held to
  :class:`~controller.backends.mlflow_registry.MlflowRegistry`'s behaviour by contract tests.
- :class:`RecordingNotifier` (:mod:`.notifier`) keeps the events it is sent;
  :class:`ManualClock` (:mod:`.clock`) is a clock a test moves; :class:`MemoryLeaseStore`
  (:mod:`.lease_store`, a :class:`~controller.ports.LeaseStore`) keeps leases in a dict, with
  the compare-and-swap the Git one gets from the remote; :class:`MemoryRequestCounts`
  (:mod:`.request_counts`) is the local router's live counts as a test sets them.
- :class:`MemoryPredictionStore` (:mod:`.prediction_store`, a
  :class:`~controller.ports.PredictionStore` and :class:`~controller.ports.PredictionSink`) is
  the prediction log in dicts: answers paired by request, late labels joined, rotation and a
  locked file, held to :class:`~controller.backends.sqlite_prediction_log.SqlitePredictionLog`
  by contract tests. :class:`MemoryEventHalves` (:mod:`.event_halves`, an
  :class:`~controller.serve.event_pairing.EventHalves`) pairs ``/v1/events``'s halves into it as
  the PostgreSQL store pairs them, shared by several routes as by several replicas.
- :class:`MemoryForge` (:mod:`.forge`, a :class:`~controller.ports.Forge`) keeps pull requests
  by branch (opened once, updated, superseded, merged or closed by a reviewer's hand), their
  comments and labels, commit statuses and dispatches, and fails as GitHub does when it is
  unreachable, rate-limited or refuses a permission, held to
  :class:`~controller.backends.github_forge.GitHubForge` by contract tests.

What they are not: a replacement for the real services. The backends (MLflow, Git, the local
target's model servers, Prometheus, Locust, Argo CD and a cluster) are exercised for real by
the integration tests (``tests/test_rollout_local.py`` and each backend's tests); these fakes
model only what a rollout pass reads, so they cannot show that a real KServe or Prometheus
behaves as they do. :class:`InstantCluster` reads a real repository, so the tests that play a
cluster with it keep a bare remote on disk and a real :class:`GitWorkspace`.
"""

from __future__ import annotations

from controller.testing.behaviours import (
    FAILING,
    HEALTHY,
    LATENCY_BOUNDS_MS,
    SLOW,
    UNLOADABLE,
    Behaviour,
    Behaviours,
)
from controller.testing.clock import ManualClock
from controller.testing.cluster import InstantCluster
from controller.testing.event_halves import MemoryEventHalves
from controller.testing.forge import MemoryForge, MemoryPull, Status
from controller.testing.graph_replay import MemoryGraphReplay
from controller.testing.lease_store import MemoryLeaseStore
from controller.testing.load import ScriptedLoad
from controller.testing.memory_remote import Commit, MemoryRemote, files_under
from controller.testing.metrics import AnsweredMetrics, ScriptedMetrics
from controller.testing.notifier import Notification, RecordingNotifier
from controller.testing.prediction_store import MemoryPredictionStore
from controller.testing.registry import MemoryRegistry
from controller.testing.release_repository import MemoryReleaseRepository
from controller.testing.request_counts import MemoryRequestCounts

__all__ = [
    "FAILING",
    "HEALTHY",
    "LATENCY_BOUNDS_MS",
    "SLOW",
    "UNLOADABLE",
    "AnsweredMetrics",
    "Behaviour",
    "Behaviours",
    "Commit",
    "InstantCluster",
    "ManualClock",
    "MemoryEventHalves",
    "MemoryForge",
    "MemoryGraphReplay",
    "MemoryLeaseStore",
    "MemoryPredictionStore",
    "MemoryPull",
    "MemoryRegistry",
    "MemoryReleaseRepository",
    "MemoryRemote",
    "MemoryRequestCounts",
    "Notification",
    "RecordingNotifier",
    "ScriptedLoad",
    "ScriptedMetrics",
    "Status",
    "files_under",
]
