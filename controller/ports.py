"""The small interfaces between Sluice's core and the outside world.

Each is a :class:`typing.Protocol` of a few methods, one backend module per implementation
under :mod:`controller.backends` (Flagger's ``pkg/metrics/providers`` shape). The core depends
on these, never on MLflow, PyGithub or GitPython directly, so it is tested with plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from controller.analysis_types import LoadPlan, LoadReport, MetricSample
from controller.domain import (
    ChangeRequest,
    ModelVersion,
    PullRequest,
    PullRequestApprovals,
    RetrainRequest,
    RunSummary,
)
from controller.lease import Lease
from controller.predictions import (
    DEFAULT_OUTCOME,
    Label,
    OutcomeCounts,
    Prediction,
    PredictionPair,
    ServedOutcome,
)
from controller.target_types import ReplayedAnswer, TargetObservation

if TYPE_CHECKING:  # pandas and numpy load with it; only a proposal's model card reads one
    from controller.quality.data_profile import DataProfile

__all__ = [
    "AliasIndex",
    "AttestationStore",
    "ChangeInfo",
    "CommitOutcome",
    "EvidenceStore",
    "Forge",
    "GraphInventory",
    "GraphReplay",
    "LeaseStore",
    "LiveRequestCounts",
    "LoadGenerator",
    "MetricsSource",
    "ModelRegistry",
    "ModelTagStore",
    "Notifier",
    "PredictionSink",
    "PredictionStore",
    "ProposalRegistry",
    "ReleaseRepository",
    "RetrainStarter",
    "RolloutRegistry",
    "ServedOutcomes",
    "ServedStorage",
    "SyncTrigger",
    "Target",
    "VersionNumber",
]


class ModelRegistry(Protocol):
    """Where model versions are registered (MLflow)."""

    def resolve(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """The version by number or alias; :class:`~controller.errors.ModelNotFound` if none."""
        ...

    def run_summary(self, run_id: str) -> RunSummary:
        """Metrics, params, tags and UI link of the run that produced a version."""
        ...


class RolloutRegistry(ModelRegistry, Protocol):
    """The registry as a rollout changes it: the champion alias, quarantine and analysis tags."""

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        ...

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one version."""
        ...

    def input_rows(self, name: str, version: int, limit: int) -> list[dict[str, object]]:
        """Up to ``limit`` example inputs of a version (its logged input example)."""
        ...


class VersionNumber(Protocol):
    """Anything that names one registered version by its number."""

    @property
    def version(self) -> int: ...


class ProposalRegistry(ModelRegistry, Protocol):
    """The registry as a proposal reads it: the version to pin, and what its pull request's
    model card shows (the champion, the version's page, its training data profile), and the
    tag recording its provenance check."""

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one version."""
        ...

    def version_by_alias(self, name: str, alias: str) -> VersionNumber | None:
        """The version ``alias`` points at; None when the model or the alias does not exist."""
        ...

    def version_url(self, name: str, version: int) -> str:
        """Link to the version in the registry's UI."""
        ...

    def reference_profile(self, run_id: str) -> DataProfile | None:
        """The training data profile logged with a run (None: it has none);
        :class:`~controller.errors.InputError` for one this Sluice cannot read."""
        ...


class AliasIndex(Protocol):
    """The aliases of the watched models in a few batched reads: what a ``sluice serve``
    pass compares with the pins (:mod:`controller.proposals.proposal_scan`)."""

    def aliases_of(self, models: Collection[str]) -> dict[str, dict[str, int]]:
        """model -> alias -> version for each of ``models`` that is registered (its cost
        follows ``models``, not the size of the registry)."""
        ...


@dataclass(frozen=True)
class ChangeInfo:
    """A commit that changed a file: its sha, commit time (whole epoch seconds, as Git keeps
    them) and the trailers of its message (``Sluice-Action: step``)."""

    sha: str
    time: float
    trailers: dict[str, str]


@dataclass(frozen=True)
class CommitOutcome:
    """What a write did: the branch tip afterwards, whether a commit was made, push attempts."""

    sha: str
    committed: bool
    attempts: int


class ReleaseRepository(Protocol):
    """The Git repository that holds the desired state, as the services read and write it.

    Reads answer from the remote's branches as of the last :meth:`sync` (one consistent
    snapshot per pass), never from a local branch. Writes are compare-and-swap on the remote:
    :meth:`commit_and_push` applies an edit to the tip it last saw, and a push that finds the
    branch moved (a lost race) is recomputed from the new tip, a bounded number of times;
    nothing is ever force-pushed. Errors are the :mod:`controller.errors` tree:
    :class:`~controller.errors.RemoteUnavailable` when the remote cannot be reached,
    :class:`~controller.errors.GitConflict` when every attempt lost its race,
    :class:`~controller.errors.PermanentError` when a push is refused for another reason.
    Implemented by :class:`controller.backends.git_repo.GitWorkspace` and, in memory, by
    :class:`controller.testing.MemoryReleaseRepository`.
    """

    def locked(self) -> AbstractContextManager[None]:
        """Hold the repository exclusively for a read-edit-push sequence (reentrant)."""
        ...

    def sync(self) -> None:
        """Fetch the remote's branches (one round trip): later reads see them."""
        ...

    def default_branch(self) -> str:
        """The remote's default branch, where the environments are declared."""
        ...

    def remote_sha(self, branch: str) -> str | None:
        """The branch's tip as of the last sync (None: no such branch)."""
        ...

    def read(self, branch: str, path: str) -> str | None:
        """A file on the branch as of the last sync (None: absent)."""
        ...

    def read_many(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Many files of the branch in one read, by path (None: absent)."""
        ...

    def blob_ids(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Git's object id of each file (``sha1("blob <size>\\0" + bytes)``) on the branch,
        by path, listed without reading the files (None: absent, or a directory): a file
        whose id a caller has seen needs no new read or parse."""
        ...

    def list_dir(self, branch: str, path: str) -> list[str]:
        """Names directly under the directory ``path`` on the branch (empty if absent)."""
        ...

    def last_change(self, branch: str, path: str) -> ChangeInfo | None:
        """The last commit on the branch's first-parent history that changed ``path`` (a
        merged proposal's merge commit, not the proposal's own); None if none did."""
        ...

    def changes(self, branch: str, path: str, limit: int = 30) -> list[ChangeInfo]:
        """The last ``limit`` commits that changed ``path``, as :meth:`last_change` finds
        them, newest first (``sluice status`` walks them back to a rollout's start)."""
        ...

    def message(self, sha: str) -> str | None:
        """The full message of a commit (None: not known here)."""
        ...

    def log_subjects(self, branch: str, since: str | None, until: str, path: str) -> list[str]:
        """``<short sha> <subject>`` of each first-parent commit after ``since`` up to
        ``until`` that changed ``path``, oldest first; ``since`` None: ``until``'s own (none
        for a root commit). Empty when a commit is unknown."""
        ...

    def diff(self, old: str, new: str, path: str) -> str:
        """Unified diff (``git diff``'s) of ``path`` between two commits."""
        ...

    def preview(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        path: str,
        restart_merged: bool = False,
    ) -> str:
        """What :meth:`commit_and_push` would change in ``path``, without committing."""
        ...

    def commit_and_push(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        message: str,
        restart_merged: bool = False,
    ) -> CommitOutcome:
        """Apply ``edit`` to a work tree of ``branch``'s tip (``base``'s when the branch does
        not exist), commit with ``message`` and push, expecting the remote branch to be where
        it was seen; on a lost race, sync and run ``edit`` again on the new tip (so it must
        be idempotent, and it may raise to refuse a tip it does not expect). An edit that
        changes nothing makes no commit. With ``restart_merged``, a branch whose tip the base
        already holds (a proposal merged, then undone on the base) starts again from the
        base's tip, replacing the old tip (``--force-with-lease``)."""
        ...


class Forge(Protocol):
    """Where proposals become reviewable pull requests: GitHub, or for ``--forge local`` the
    null :class:`~controller.null_ports.NoForge` (no pull requests, reports go nowhere)."""

    @property
    def opens_pull_requests(self) -> bool:
        """Whether proposals become pull requests here and retrainings dispatched workflows;
        False: a person merges a proposal branch with git and a retraining runs locally."""
        ...

    def check_access(self) -> None:
        """Fail now (bad token, unknown repository) rather than after a branch is pushed."""
        ...

    def open_or_update(self, change: ChangeRequest) -> PullRequest:
        """Open a pull request for the branch, or update the open one (never a duplicate), and
        close older open proposals under ``change.supersedes_prefix`` with a comment."""
        ...

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        """Set a commit status (``success``, ``failure``, ``pending``, ``error``) on ``sha``."""
        ...

    def comment(self, number: int, body: str) -> None:
        """Add a comment to a pull request."""
        ...

    def find_pull_request(self, branch: str) -> int | None:
        """The pull request (open, closed or merged) a proposal branch became, if any."""
        ...

    def approvals(self, number: int) -> PullRequestApprovals:
        """Who approves pull request ``number`` now (see
        :class:`~controller.domain.PullRequestApprovals`); a pull request that does not exist
        is a :class:`~controller.errors.PermanentError`."""
        ...

    def rewrite_body(self, number: int, rewrite: Callable[[str], str]) -> bool:
        """Replace pull request ``number``'s body with ``rewrite(body)`` of the body it has now
        (read afresh, so a retry rewrites what is there), cut to the forge's limit; False when
        that changes nothing, so nothing was written. A pull request that does not exist is a
        :class:`~controller.errors.PermanentError`."""
        ...

    def dispatch(self, event_type: str, payload: Mapping[str, object]) -> None:
        """Send a ``repository_dispatch`` event (``retrain``) that a workflow listens for."""
        ...


class MetricsSource(Protocol):
    """Where request metrics are queried (Prometheus), as Flagger's metrics provider."""

    def query(self, promql: str) -> list[MetricSample]:
        """Evaluate an instant query now; :class:`~controller.errors.MetricsUnavailable` when
        the source cannot answer (unreachable, timeout, query error). An empty list is an
        answer: "no data", which the gates treat as inconclusive."""
        ...


class LoadGenerator(Protocol):
    """What puts load on a canary before it is judged (Locust, headless)."""

    def run(self, plan: LoadPlan) -> LoadReport:
        """Run the load test to completion and report what it measured."""
        ...


class Target(Protocol):
    """Where InferenceServices run: the local target, or a cluster with Argo CD."""

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        """The InferenceService's status and the environment's sync state, now."""
        ...


@runtime_checkable
class SyncTrigger(Protocol):
    """A target that can be told to sync now, as a Git webhook tells Argo CD to refresh: the
    rollout asks after each commit it pushes, so a rollback does not wait for the next poll."""

    def request_sync(self, environment: str) -> None:
        """Ask for a sync of ``environment``'s branch; best-effort: a failure is logged by
        the caller and the target's own poll syncs the commit later."""
        ...


@runtime_checkable
class LiveRequestCounts(Protocol):
    """Each revision's answers as they are counted, with no scrape in between: the local
    router's counters (:meth:`controller.local.target.LocalTarget.request_counts`).
    Where there is none (a cluster), the sequential watch reads Prometheus instead."""

    def request_counts(
        self, environment: str, inference_service: str, since: float
    ) -> Mapping[str, Mapping[int, int]]:
        """Answers per revision and HTTP status code since ``since`` (epoch seconds);
        :class:`~controller.errors.RemoteUnavailable` when they cannot be read."""
        ...


@runtime_checkable
class GraphInventory(Protocol):
    """A target that lists the InferenceGraphs an environment runs: the local target from its
    runtime's state, a cluster from the Kubernetes API (the environment's namespace).
    ``sluice status`` shows each graph's members; a target without it shows no graphs and
    says so."""

    def inference_graphs(self, environment: str) -> list[Mapping[str, Any]]:
        """Each InferenceGraph of ``environment`` as the Kubernetes API returns it (``spec``,
        and ``status`` once KServe wrote one); empty when it runs none.
        :class:`~controller.errors.RemoteUnavailable` when the target cannot be asked."""
        ...


@runtime_checkable
class ServedStorage(Protocol):
    """A target that says which ``storageUri`` each revision of an InferenceService loaded:
    the local target from its revisions, a cluster from the InferenceService's spec.
    ``sluice lineage`` checks that what serves is what the pin names; a target without it
    leaves that link unchecked and says so."""

    def served_storage(self, environment: str, inference_service: str) -> dict[str, str]:
        """The storageUri of each revision, by revision name (empty: none known);
        :class:`~controller.errors.RemoteUnavailable` when the target cannot be asked."""
        ...


class Notifier(Protocol):
    """Where rollout events are announced (Slack-compatible webhook, or nowhere)."""

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Send one event; failures are logged, never raised (a notification is best-effort)."""
        ...


class ModelTagStore(Protocol):
    """Tags on a registered model (not a version): where a cool-down outlives the process."""

    def registered_model_tags(self, name: str) -> dict[str, str]:
        """The model's tags; :class:`~controller.errors.ModelNotFound` for an unknown model."""
        ...

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the model."""
        ...


class AttestationStore(Protocol):
    """Where a version's provenance attestation and its artifact's files are read (MLflow:
    ``provenance.intoto.jsonl`` of the version's run, and the files the registry serves)."""

    def attestation(self, name: str, version: int) -> bytes | None:
        """The version's DSSE envelope as logged, or None when its run logged none."""
        ...

    def artifact_digests(self, name: str, version: int) -> dict[str, str]:
        """The sha256 (hex) of every file of the version's model artifact as served now, by
        its path inside the artifact."""
        ...


class EvidenceStore(Protocol):
    """Where a version's evidence envelopes are kept (MLflow: ``evidence/ENV/KIND.intoto.jsonl``
    in the version's run, each digest in the version tag ``sluice.evidence.ENV.KIND``)."""

    def record(self, name: str, version: int, line: bytes, *, kind: str, environment: str) -> str:
        """Keep ``line`` (one signed envelope) as the version's ``kind`` evidence in
        ``environment``, replacing an earlier one, and tag its digest; returns the digest
        (``sha256:<hex>``)."""
        ...

    def evidence(self, name: str, version: int) -> list[bytes]:
        """Every evidence envelope line kept for the version, in no particular order."""
        ...

    def evidence_tags(self, name: str, version: int) -> dict[str, str]:
        """The version's ``sluice.evidence.*`` tags: the digest each envelope had when it was
        recorded, by tag."""
        ...


class RetrainStarter(Protocol):
    """What starts a retraining: a ``repository_dispatch`` to the train workflow, or a local
    process running the training module."""

    def start(self, request: RetrainRequest) -> str:
        """Start it without waiting for it; returns one line saying what was started."""
        ...


class PredictionSink(Protocol):
    """Where the router hands every answer ."""

    def record(self, prediction: Prediction) -> None:
        """Accept one answer. Called on the router's event loop: return at once, never block
        on I/O, never raise (drop the answer instead)."""
        ...


class PredictionStore(Protocol):
    """Where a shadow judge reads paired answers and labels arrive (a production log's port)."""

    def record_feedback(
        self, request_id: str, label: Label, outcome: str = DEFAULT_OUTCOME
    ) -> None:
        """Store the value of one request's ``outcome``, a number or a class name (the latest
        value of a request's outcome wins)."""
        ...

    def record_feedback_batch(
        self, labels: Iterable[tuple[str, Label]], outcome: str = DEFAULT_OUTCOME
    ) -> int:
        """Store many ``(request_id, label)`` of one ``outcome`` at once, all or none; returns
        how many."""
        ...

    def record_outcomes(self, rows: Iterable[tuple[str, str, Label]]) -> int:
        """Store many ``(request_id, outcome, value)`` at once, all or none; returns how many.
        A request may have several named outcomes (a graph's ``regime`` and ``up``)."""
        ...

    def outcomes(self, request_ids: Iterable[str], outcome: str) -> dict[str, Label]:
        """The value of ``outcome`` of those of ``request_ids`` that have one."""
        ...

    def count_logged(self, request_ids: Iterable[str]) -> int:
        """How many of these distinct request ids have an answer in the log."""
        ...

    def pairs(
        self,
        *,
        model: str | None = None,
        shadow_revision: str | None = None,
        since: float | None = None,
        labelled: bool = False,
        limit: int | None = None,
        outcome: str = DEFAULT_OUTCOME,
    ) -> list[PredictionPair]:
        """Requests both answered, oldest first, each with the value of ``outcome`` as its
        label (None until it arrived; ``labelled``: only those where it did)."""
        ...

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        """The primary answers of ``model`` by any of ``revisions`` sent at or after ``since``
        (epoch seconds), oldest first, each with the value of ``outcome`` (None until it
        arrived): :class:`ServedOutcomes`."""
        ...

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        """What :meth:`served_outcomes` returns, counted per revision in the store with cut-off
        ``settled``: :class:`ServedOutcomes`."""
        ...

    def served_revisions(self, model: str, since: float) -> list[str]:
        """The revisions of ``model`` whose primary answers were sent at or after ``since``,
        each once, by their first answer then: :class:`ServedOutcomes`."""
        ...


class ServedOutcomes(Protocol):
    """Where a KPI check reads each revision's requests and their late outcomes (the prediction
    log; :class:`PredictionStore` is one)."""

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        """The primary answers of ``model`` by any of ``revisions`` sent at or after ``since``
        (epoch seconds), oldest first, each with the value of ``outcome`` of its request (None
        until it arrived)."""
        ...

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        """The rows :meth:`served_outcomes` would return, counted per revision by the store in
        one aggregating query (a rate KPI needs the counts, not the rows): the answers sent at
        or before ``settled``, those of them with a number as outcome and those with 1, and the
        values in the whole window a rate cannot count
        (:func:`~controller.predictions.count_outcomes` over the rows, which it must equal).
        Revisions without answers since ``since`` are absent."""
        ...

    def served_revisions(self, model: str, since: float) -> list[str]:
        """The revisions of ``model`` whose primary answers were sent at or after ``since``,
        each once, in the order of their first answer since then."""
        ...


class LeaseStore(Protocol):
    """Where the lease of each release is kept (:mod:`controller.lease`): a compare-and-swap
    register per name: a ref in the GitOps remote (:mod:`controller.backends.git_lease`), or a
    ``coordination.k8s.io/v1`` Lease (:mod:`controller.backends.kubernetes_lease`)."""

    def read(self, name: str) -> tuple[Lease, str] | None:
        """The lease recorded for ``name`` and the version token to swap it from; None when
        there is none."""
        ...

    def swap(self, name: str, expected: str | None, lease: Lease | None) -> bool:
        """Record ``lease`` (None: remove it) if the record's version is still ``expected``
        (None: there is no record); False when another writer changed it first."""
        ...


class GraphReplay(Protocol):
    """What an InferenceGraph would have answered had one of its members answered as given:
    the graph runs as deployed, with every step of ``member`` answering the given answer
    instead of being called and every other step called as for a client (the local target's
    graph router, :mod:`controller.local.graph_replay`; KServe's router has no such thing,
    :class:`~controller.null_ports.NoGraphReplay`). How a shadow challenger of a graph's first
    member is judged by what its decisions would have done downstream."""

    def replay(self, graph: str, member: str, answers: Sequence[object]) -> list[ReplayedAnswer]:
        """The graph's answer to each of ``answers`` (each the member's JSON answer as logged),
        in order. :class:`~controller.errors.TransientError` when the graph cannot be asked now,
        :class:`~controller.errors.ConfigError` when ``member`` is not the first step of the
        graph's root Sequence, :class:`~controller.errors.InputError` for answers it refuses."""
        ...
