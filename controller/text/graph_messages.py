"""The words of a graph change: its branch, its commits and its pull request's body.

A change to an InferenceGraph is proposed and walked as a canary of the graph itself
(:mod:`controller.manifests.graph_canary`), in four kinds of commits, each subject within
Argo CD's 64 characters and saying what moved where::

    graph market-regime → local (canary 10%)        the proposal (its branch's commit)
    graph market-regime: canary 50% (local)         a step, on the environment's branch
    graph market-regime: promoted (local)           the new graph alone
    rollback graph market-regime: p99 doubled       the old graph alone again

The body says what the requests do now and what to run next; trailers make the commit
machine-readable (``Sluice-Graph``, ``Sluice-Env``, ``Sluice-Graph-Canary``, ``Sluice-Action``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from controller.analysis_types import GateResult
from controller.rollout.messages import gate_lines
from controller.text.commit_message import SUBJECT_LIMIT
from controller.text.forge_limits import fit_body

__all__ = [
    "GRAPH_CARD_MARKER",
    "GraphCard",
    "GraphCommit",
    "graph_branch",
    "graph_branch_prefix",
    "render_graph_card",
    "render_graph_message",
]

GraphAction = Literal["propose", "step", "promote", "rollback"]
#: Ends a graph proposal's pull request body, so that tools can find it.
GRAPH_CARD_MARKER = "<!-- sluice:graph-card -->"


def graph_branch_prefix(environment: str, graph: str) -> str:
    """Where an environment's proposals of a graph live (one branch per proposed spec)."""
    return f"sluice/{environment}/graph-{graph}/"


def graph_branch(environment: str, graph: str, digest: str) -> str:
    """Deterministic from the proposed spec, so a rerun finds the first run's branch and PR."""
    return f"{graph_branch_prefix(environment, graph)}{digest}"


@dataclass(frozen=True)
class GraphCommit:
    """The view a graph commit is rendered from."""

    graph: str
    environment: str
    action: GraphAction
    #: The digest of the proposed spec (the canary's).
    digest: str
    #: The canary's weight after the commit (the proposal's and a step's).
    weight: int | None = None
    #: The canary's weight before the commit (a step's, a promotion's, a rollback's).
    previous_weight: int | None = None
    reason: str = ""
    #: Which nodes the proposed graph changes, adds and removes (a proposal's).
    changes: Sequence[str] = ()
    #: The analysis that led to the commit (``sluice graph rollout``'s): one line each.
    results: tuple[GateResult, ...] = ()


def _fit(subject: str, graph: str) -> str:
    """The subject within Argo CD's 64 characters, the graph's name shortened first."""
    if len(subject) <= SUBJECT_LIMIT:
        return subject
    room = max(len(graph) - (len(subject) - SUBJECT_LIMIT) - 1, 1)
    return subject.replace(graph, f"{graph[:room]}…", 1)[:SUBJECT_LIMIT]


def _subject(commit: GraphCommit) -> str:
    graph, env = commit.graph, commit.environment
    if commit.action == "propose":
        return _fit(f"graph {graph} → {env} (canary {commit.weight}%)", graph)
    if commit.action == "step":
        return _fit(f"graph {graph}: canary {commit.weight}% ({env})", graph)
    if commit.action == "promote":
        return _fit(f"graph {graph}: promoted ({env})", graph)
    subject = _fit(f"rollback graph {graph}: ", graph) + " ".join(commit.reason.split())
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 1].rstrip() + "…"
    return subject


def _summary(commit: GraphCommit) -> str:
    graph, env, weight = commit.graph, commit.environment, commit.weight
    was = f" (it had {commit.previous_weight}%)" if commit.previous_weight is not None else ""
    if commit.action == "propose":
        assert weight is not None
        return (
            f"Once merged, a Splitter at the root of InferenceGraph {graph} sends {weight}% of "
            f"{env}'s requests to the proposed graph (canary, spec {commit.digest}) and "
            f"{100 - weight}% to the current one (stable), until it is stepped, promoted or "
            "rolled back."
        )
    if commit.action == "step":
        assert weight is not None
        return (
            f"The proposed graph (canary, spec {commit.digest}) now takes {weight}% of {env}'s "
            f"requests to {graph}{was}, the current one (stable) {100 - weight}%."
        )
    if commit.action == "promote":
        return (
            f"The proposed graph (spec {commit.digest}) replaces the current one and takes all "
            f"of {env}'s requests to {graph}{was}; the Splitter and the old graph's nodes are "
            "gone."
        )
    return (
        f"{' '.join(commit.reason.split())}\n\nThe current graph takes all of {env}'s requests "
        f"to {graph} again, as before the canary of spec {commit.digest}{was}; the Splitter "
        "and the canary's nodes are gone."
    )


def _next(commit: GraphCommit) -> str:
    graph, env = commit.graph, commit.environment
    if commit.action not in ("propose", "step"):
        return ""
    return (
        f"\n\nNext: `sluice graph rollout {graph} --env {env}` judges the canary branch against "
        "the stable one (sluice_graph_branch_duration_seconds, node root) and steps, promotes "
        f"or rolls back by itself; by hand: `sluice graph step {graph} --env {env} --weight N`, "
        f"`sluice graph promote {graph} --env {env}` or `sluice graph rollback {graph} "
        f"--env {env} --reason TEXT`."
    )


def render_graph_message(commit: GraphCommit) -> str:
    """The full commit message: subject, body, trailers."""
    changes = "\n".join(f"- {line}" for line in commit.changes)
    nodes = f"\n\nNodes:\n{changes}" if changes else ""
    gates = "\n".join(gate_lines(commit.results))
    nodes += f"\n\n{gates}" if gates else ""
    trailers = (
        f"Sluice-Graph: {commit.graph}\nSluice-Env: {commit.environment}\n"
        f"Sluice-Graph-Canary: {commit.digest}\nSluice-Action: graph-{commit.action}\n"
    )
    return f"{_subject(commit)}\n\n{_summary(commit)}{nodes}{_next(commit)}\n\n{trailers}"


@dataclass(frozen=True)
class GraphCard:
    """A graph proposal as its pull request (or ``sluice graph propose``) shows it."""

    commit: GraphCommit
    path: str
    diff: str
    validation: Sequence[str]


def render_graph_card(card: GraphCard) -> str:
    """The pull request's body: what changes for the requests, the graph diff (of the specs,
    not of the canary form), the validation, and the commands that walk the canary."""
    commit = card.commit
    graph, env = commit.graph, commit.environment
    checks = "\n".join(f"- [pass] {line}" for line in card.validation)
    changes = "\n".join(f"- {line}" for line in commit.changes)
    body = f"""## InferenceGraph {graph} → {env}: canary {commit.weight}%

{_summary(commit)}

The file `{card.path}` holds both graphs after the merge: the current one's nodes as they are
(its `root` renamed `stable`), the proposed one's prefixed `canary-` (its `root` named
`canary`), and annotations `sluice.dev/graph-canary: "{commit.digest}"` and
`sluice.dev/graph-canary-weight`.

### Nodes

{changes}

### Graph diff (current spec → proposed spec)

```diff
{card.diff.rstrip()}
```

### Validation

{checks}

### After the merge

`sluice graph rollout {graph} --env {env}` walks the canary: at each step of the
environment's `graphRollout` policy it compares the two branches on the graph router's
`sluice_graph_branch_duration_seconds{{graph_name="{graph}", node_name="root"}}` (step
`canary` against step `stable`: success rate and latency), then commits the next weight, the
promotion, or the rollback with the failed check's numbers. By hand:

```console
$ sluice graph step {graph} --env {env} --weight 50
$ sluice graph promote {graph} --env {env}
$ sluice graph rollback {graph} --env {env} --reason "..."
```

{GRAPH_CARD_MARKER}
"""
    return fit_body(body)
