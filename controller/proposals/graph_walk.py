"""Walk a merged graph canary by hand: move its weight, promote it, or roll it back.

Once a graph proposal (:mod:`controller.proposals.graph_propose`) is merged, the environment's
graph is in canary form. Each of ``sluice graph step``, ``promote`` and ``rollback`` is then one
commit pushed to the environment's branch, as a rollout's commits are: the edit is decided from
the graph as the branch held it, and re-run by
:meth:`~controller.ports.ReleaseRepository.commit_and_push` on a new tip when the push lost a
race, as a compare-and-swap: a graph already in the state it writes is left alone (nothing is
committed: the command ran already, or its push landed before a crash), and a graph changed
in between is a conflict (run again). A promotion or rollback of a graph that has no canary any
more changes nothing and says what the last change of its file was.

``sluice graph rollout`` (:mod:`controller.rollout.graph_reconcile`) makes the same commits,
with the analysis behind each in its body (``results``) and the canary it judged as the state
the graph must still be in (``expected``): one stepped, promoted or rolled back meanwhile is a
conflict, and nothing is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from controller.analysis_types import GateResult
from controller.errors import GitConflict, InputError
from controller.manifests.graph_canary import (
    GraphCanary,
    canary_state,
    check_weight,
    promoted,
    restored,
    with_canary_weight,
)
from controller.manifests.graph_file import dump_graph, load_graph
from controller.manifests.inference_graph import validate_inferencegraph
from controller.manifests.render import validate_rendered
from controller.ports import ReleaseRepository
from controller.proposals.graph_source import GraphSource, read_graph
from controller.text.graph_messages import GraphCommit, render_graph_message

__all__ = ["GraphWalk", "GraphWalkResult", "walk_graph"]

WalkAction = Literal["step", "promote", "rollback"]


@dataclass(frozen=True)
class GraphWalk:
    """What the user asked for: a step to ``weight``, a promotion, or a rollback with
    ``reason``."""

    graph: str
    environment: str
    action: WalkAction
    weight: int | None = None
    reason: str = ""
    #: The analysis behind the action (``sluice graph rollout``'s), for the commit's body.
    results: tuple[GateResult, ...] = ()
    #: The canary the action was decided on (``sluice graph rollout``'s): a graph found in
    #: another state (another canary, another weight) is a conflict, and nothing is committed.
    expected: GraphCanary | None = None


@dataclass(frozen=True)
class GraphWalkResult:
    """What happened: ``committed``; ``done-already`` (the graph was in the state the command
    writes); ``no-canary`` (nothing to promote or roll back)."""

    status: Literal["committed", "done-already", "no-canary"]
    graph: str
    environment: str
    action: WalkAction
    branch: str
    path: str
    commit: str | None
    subject: str
    digest: str | None = None
    weight: int | None = None
    previous_weight: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _plain(document: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(document, default=str))


def _transform(request: GraphWalk) -> Callable[[Mapping[str, Any]], MutableMapping[str, Any]]:
    if request.action == "step":
        assert request.weight is not None
        weight = request.weight
        return lambda document: with_canary_weight(document, weight)
    return promoted if request.action == "promote" else restored


def _edit(
    source: GraphSource, change: Callable[[Mapping[str, Any]], MutableMapping[str, Any]]
) -> Callable[[Path], None]:
    """The compare-and-swap edit of the graph's file (see the module)."""
    read, intended = _plain(source.document), _plain(change(source.document))

    def edit(worktree: Path) -> None:
        file = worktree / source.path
        document = load_graph(file.read_text(encoding="utf-8"), source=source.path)
        now = _plain(document)
        if now == intended:
            return  # done already: nothing to commit
        if now != read:
            raise GitConflict(
                f"{source.path} changed on {source.branch} since it was read; run again"
            )
        changed = change(document)
        validate_inferencegraph(changed, source=source.path)
        file.write_text(dump_graph(changed), encoding="utf-8")
        validate_rendered(worktree / source.overlay, tree=worktree)

    return edit


def _no_canary(request: GraphWalk, workspace: ReleaseRepository, source: GraphSource) -> str:
    if request.action == "step":
        raise InputError(
            f"InferenceGraph {request.graph} in {request.environment} has no canary to step; "
            f"propose a change first (sluice graph propose {request.graph} --env "
            f"{request.environment} --spec FILE)"
        )
    last = workspace.changes(source.branch, source.path, 1)
    subject = ""
    if last:
        message = workspace.message(last[0].sha) or ""
        subject = f" (last change: {last[0].sha[:7]} {message.partition(chr(10))[0]})"
    verb = "promote" if request.action == "promote" else "roll back"
    return (
        f"InferenceGraph {request.graph} in {request.environment} serves no canary{subject}: "
        f"nothing to {verb}"
    )


def walk_graph(request: GraphWalk, *, workspace: ReleaseRepository) -> GraphWalkResult:
    """Commit the step, the promotion or the rollback to the environment's branch."""
    if request.action == "step":
        check_weight(request.weight if request.weight is not None else -1)
    if request.action == "rollback" and not request.reason.strip():
        raise InputError("a rollback needs a reason: --reason TEXT (it is the commit's subject)")
    with workspace.locked():
        workspace.sync()
        source = read_graph(workspace, request.environment, request.graph)
        state = canary_state(source.document)
        name = source.config.name
        if request.expected is not None and state != request.expected:
            now = "no canary" if state is None else f"canary {state.digest} at {state.weight}%"
            raise GitConflict(
                f"InferenceGraph {request.graph} in {name} changed since it was judged (it was "
                f"canary {request.expected.digest} at {request.expected.weight}%, it is {now} "
                f"on {source.branch}); run again"
            )
        if state is None:
            note = _no_canary(request, workspace, source)
            return GraphWalkResult(
                "no-canary", request.graph, name, request.action, source.branch, source.path,
                commit=workspace.remote_sha(source.branch), subject=note,
            )  # fmt: skip
        commit = GraphCommit(
            graph=request.graph, environment=name, action=request.action, digest=state.digest,
            weight=request.weight if request.action == "step" else None,
            previous_weight=state.weight, reason=request.reason, results=request.results,
        )  # fmt: skip
        message = render_graph_message(commit)
        outcome = workspace.commit_and_push(
            branch=source.branch, base=source.branch,
            edit=_edit(source, _transform(request)), message=message,
        )  # fmt: skip
    return GraphWalkResult(
        "committed" if outcome.committed else "done-already", request.graph, name,
        request.action, source.branch, source.path, commit=outcome.sha,
        subject=message.partition("\n")[0], digest=state.digest, weight=commit.weight,
        previous_weight=state.weight,
    )  # fmt: skip
