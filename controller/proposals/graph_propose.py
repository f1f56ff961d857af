"""Propose a change to an InferenceGraph: a branch whose commit puts the graph in canary form.

``sluice graph propose GRAPH --env ENV --spec FILE`` reads the environment's graph from its
overlay (:mod:`controller.proposals.graph_source`), checks the proposed graph in ``FILE``
strictly (the same name, KServe's schema and rules and Sluice's), and commits to the branch
``sluice/ENV/graph-GRAPH/<digest of the proposed spec>`` the graph's **canary form**
(:mod:`controller.manifests.graph_canary`): both graphs under a Splitter at the root, the
proposed one at ``W`` %. The canary form is validated too, and the rendered overlay, before
anything is committed. The pull request (``--forge github``), or the printed proposal
(``--forge local``), shows the diff of the two *specs*, which is what a reviewer judges.

Everything that can be refused is refused before Git is touched: an unknown environment or
graph, a file that is not a valid graph, one with another name, a graph already in canary form,
a proposal that changes nothing. A rerun finds its branch (the digest is the proposed spec's)
and commits nothing new; the same spec proposed again after its canary was merged and rolled
back remakes the branch from the environment's branch, so that there is something to merge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from ruamel.yaml.comments import CommentedMap

from controller.domain import ChangeRequest
from controller.errors import GitConflict, InputError
from controller.manifests.graph_canary import (
    canary_form,
    canary_state,
    check_weight,
    node_changes,
    spec_digest,
    with_canary_weight,
)
from controller.manifests.graph_file import dump_graph, graph_name, load_graph, spec_diff
from controller.manifests.inference_graph import validate_inferencegraph
from controller.manifests.render import validate_rendered
from controller.ports import Forge, ReleaseRepository
from controller.proposals.graph_source import GraphSource, read_graph
from controller.text.graph_messages import (
    GraphCard,
    GraphCommit,
    graph_branch,
    graph_branch_prefix,
    render_graph_card,
    render_graph_message,
)

__all__ = ["VALIDATION", "GraphProposal", "GraphProposalResult", "propose_graph"]

#: What a proposal checked before it committed, as its card lists it.
VALIDATION = (
    "proposed graph: KServe's InferenceGraph schema (unknown fields refused), KServe's webhook "
    "rules (a root node, one target per step, unique step names, Splitter weights summing to "
    "100) and Sluice's (every nodeName names a node, no loop)",
    "canary form (both graphs under the root Splitter): the same checks",
    "the overlay rendered as Argo CD renders it (kubectl kustomize), every object validated",
)


@dataclass(frozen=True)
class GraphProposal:
    """What the user asked for: ``spec_text`` is the proposed graph's file, read from
    ``spec_source``; ``weight`` None takes the environment's first rollout step."""

    graph: str
    environment: str
    spec_text: str
    spec_source: str
    weight: int | None = None


@dataclass(frozen=True)
class GraphProposalResult:
    """What happened, as ``--json`` prints it."""

    status: Literal["proposed", "unchanged"]
    graph: str
    environment: str
    digest: str
    weight: int
    path: str
    branch: str
    base: str
    commit: str
    subject: str
    diff: str
    validation: tuple[str, ...]
    body: str
    pull_request: int | None = None
    pull_request_url: str | None = None
    superseded: tuple[int, ...] = ()
    merge_command: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _weight(request: GraphProposal, source: GraphSource) -> int:
    if request.weight is not None:
        return check_weight(request.weight)
    return source.config.graph_rollout.steps[0]  # 1 to 99: the policy checks its steps


def _proposed(request: GraphProposal, source: GraphSource) -> CommentedMap:
    """The proposed graph, checked: one graph, the same name, valid, a change."""
    proposed = load_graph(request.spec_text, source=request.spec_source)
    name = graph_name(proposed)
    if name != request.graph:
        raise InputError(
            f"{request.spec_source} is InferenceGraph {name!r}, not {request.graph!r}; propose "
            f"a change of {request.graph} under its own name (metadata.name: {request.graph})"
        )
    validate_inferencegraph(proposed, source=request.spec_source)
    current = source.document
    state = canary_state(current)
    if state is not None:
        raise InputError(
            f"InferenceGraph {request.graph} in {request.environment} is already in canary form "
            f"(spec {state.digest} at {state.weight}%); promote or roll it back first (sluice "
            f"graph promote|rollback {request.graph} --env {request.environment})"
        )
    if spec_digest(proposed) == spec_digest(current):
        raise InputError(
            f"{request.spec_source} has the same spec as InferenceGraph {request.graph} in "
            f"{request.environment} ({source.path}@{source.branch}): nothing to propose; change "
            "the graph's spec.nodes"
        )
    return proposed


def _edit(
    source: GraphSource, proposed: CommentedMap, weight: int, digest: str
) -> Callable[[Path], None]:
    """The branch's edit: the canary form of the graph on the branch's tip (a rerun's branch
    holds it already and is left alone; a graph changed since it was read is a conflict)."""
    current_digest = spec_digest(source.document)

    def edit(worktree: Path) -> None:
        file = worktree / source.path
        document = load_graph(file.read_text(encoding="utf-8"), source=source.path)
        state = canary_state(document)
        if state is not None and state.digest == digest:
            if state.weight == weight:
                return  # proposed already: a rerun commits nothing
            changed = with_canary_weight(document, weight)
        elif state is not None or spec_digest(document) != current_digest:
            raise GitConflict(
                f"{source.path} changed on {source.branch} since it was read; run again"
            )
        else:
            changed = canary_form(document, proposed, weight)
        validate_inferencegraph(changed, source=f"{source.path} (canary form)")
        file.write_text(dump_graph(changed), encoding="utf-8")
        validate_rendered(worktree / source.overlay, tree=worktree)

    return edit


def propose_graph(
    request: GraphProposal, *, workspace: ReleaseRepository, forge: Forge
) -> GraphProposalResult:
    """Check, commit the canary form to the proposal's branch, push, open the pull request."""
    with workspace.locked():
        workspace.sync()
        source = read_graph(workspace, request.environment, request.graph)
        proposed = _proposed(request, source)
        weight = _weight(request, source)
        # The canary form of the graph as read must itself be one KServe admits.
        validate_inferencegraph(
            canary_form(source.document, proposed, weight), source=f"{source.path} (canary form)"
        )
        digest = spec_digest(proposed)
        commit = GraphCommit(
            graph=request.graph, environment=source.config.name, action="propose",
            digest=digest, weight=weight, changes=node_changes(source.document, proposed),
        )  # fmt: skip
        message = render_graph_message(commit)
        branch = graph_branch(source.config.name, request.graph, digest)
        diff = spec_diff(
            source.document, proposed,
            old_label=f"a/{source.path}@{source.branch} (spec)",
            new_label=f"b/{request.spec_source} (spec)",
        )  # fmt: skip
        forge.check_access()
        path = source.path
        outcome = workspace.commit_and_push(
            branch=branch, base=source.branch, edit=_edit(source, proposed, weight, digest),
            message=message, restart_merged=True,
        )  # fmt: skip
        _check_landed(workspace, branch, path, digest)
    card = render_graph_card(GraphCard(commit, path, diff, VALIDATION))
    result = GraphProposalResult(
        status="proposed" if outcome.committed else "unchanged", graph=request.graph,
        environment=source.config.name, digest=digest, weight=weight, path=path, branch=branch,
        base=source.branch, commit=outcome.sha, subject=message.splitlines()[0], diff=diff,
        validation=VALIDATION, body=card,
    )  # fmt: skip
    if not forge.opens_pull_requests:
        return replace(
            result,
            merge_command=(
                f"git fetch origin && git checkout {source.branch} && "
                f"git merge --no-ff origin/{branch} && git push origin {source.branch}"
            ),
        )
    pull = forge.open_or_update(
        ChangeRequest(
            branch=branch, base=source.branch, title=result.subject, body=card,
            labels=("sluice", f"graph:{request.graph}", f"env:{source.config.name}"),
            head_sha=outcome.sha,
            supersedes_prefix=graph_branch_prefix(source.config.name, request.graph),
        )
    )  # fmt: skip
    forge.report_status(
        outcome.sha, context="sluice/validate", state="success",
        description="The graph and its canary form validate against KServe's schema and rules",
    )  # fmt: skip
    return replace(
        result, pull_request=pull.number, pull_request_url=pull.url, superseded=pull.superseded
    )


def _check_landed(workspace: ReleaseRepository, branch: str, path: str, digest: str) -> None:
    """Report only a branch that is on the remote with the canary form of this spec."""
    workspace.sync()
    text = workspace.read(branch, path)
    state = None if text is None else canary_state(load_graph(text, source=path))
    if state is None or state.digest != digest:
        raise GitConflict(
            f"after the push, {branch} on the remote does not hold the canary of spec {digest}; "
            "another writer moved it: run again"
        )
