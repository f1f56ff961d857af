"""``sluice graph``: wire Git and the forge to a graph proposal and its walk, and report.

The composition root of ``sluice graph propose|step|promote|rollback|rollout`` (the only place
their concrete backends are named); the work is :mod:`controller.proposals.graph_propose`,
:mod:`controller.proposals.graph_walk` and :mod:`controller.rollout.graph_reconcile`.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Literal

from rich.console import Console
from rich.syntax import Syntax

from controller.commands.local_state import local_root
from controller.commands.propose import build_forge, gitops_workspace, say, say_pull_requests
from controller.commands.rollout_backends import (
    TargetKind,
    build_lease,
    build_metrics,
    build_target,
)
from controller.errors import SluiceError
from controller.ports import GraphInventory
from controller.proposals.graph_propose import GraphProposal, GraphProposalResult, propose_graph
from controller.proposals.graph_walk import GraphWalk, GraphWalkResult, walk_graph
from controller.rollout.actions import Outcome
from controller.rollout.graph_reconcile import GraphPassReport, GraphRollout
from controller.settings import Settings

__all__ = ["run_graph_propose", "run_graph_rollout", "run_graph_walk"]


def _print_proposal(result: GraphProposalResult, console: Console) -> None:
    verb = "Proposed" if result.status == "proposed" else "Already proposed (no new commit)"
    say(console, f"{verb}: {result.subject}")
    say(console, f"branch {result.branch} → {result.base} at {result.commit[:12]}")
    say(console, f"Graph diff ({result.path}, current spec → proposed spec):")
    if console.is_terminal:
        console.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    else:
        say(console, result.diff.rstrip("\n"))
    say(console, "Validation:")
    for line in result.validation:
        say(console, f"- [pass] {line}")
    say_pull_requests(console, result.pull_request, result.pull_request_url, result.superseded)
    if result.merge_command:
        say(
            console,
            "To deploy, merge it as a pull request would, in a clone of the remote:\n"
            f"  {result.merge_command}\n"
            f"then walk it: sluice graph rollout {result.graph} --env {result.environment} "
            "(or by hand: sluice graph step|promote|rollback)",
        )


def run_graph_propose(
    settings: Settings,
    request: GraphProposal,
    *,
    forge: Literal["github", "local"],
    remote: str | None,
    as_json: bool,
    console: Console,
) -> GraphProposalResult:
    """Propose the graph change and print the result."""
    result = propose_graph(
        request, workspace=gitops_workspace(settings, remote), forge=build_forge(settings, forge)
    )
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        _print_proposal(result, console)
    return result


def _sync_local(settings: Settings, environment: str) -> None:
    """Ask a local runtime of ``environment`` to fetch the commit now, as a rollout's commits
    do; without one (a cluster's Argo CD polls Git, or its webhook refreshes), nothing."""
    from controller.local.target import LocalTarget

    # No local runtime of this environment: its poll, or Argo CD's, finds the commit.
    with contextlib.suppress(SluiceError):
        LocalTarget(local_root(settings)).request_sync(environment)


def run_graph_walk(
    settings: Settings,
    request: GraphWalk,
    *,
    remote: str | None,
    as_json: bool,
    console: Console,
) -> GraphWalkResult:
    """Commit the step, promotion or rollback and print what happened."""
    result = walk_graph(request, workspace=gitops_workspace(settings, remote))
    if result.status == "committed":
        _sync_local(settings, result.environment)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    elif result.status == "no-canary":
        say(console, result.subject)
    elif result.status == "done-already":
        say(console, f"Done already (nothing committed): {result.subject}")
    else:
        assert result.commit is not None
        say(console, f"Committed: {result.subject}")
        say(console, f"{result.branch} at {result.commit[:12]} ({result.path})")
    return result


def _print_pass(report: GraphPassReport, console: Console) -> None:
    stamp = time.strftime("%H:%M:%S")
    weight = f" canary {report.weight}%" if report.weight is not None else ""
    lines = [f"{stamp} graph {report.graph}{weight} [{report.phase}] {report.detail}"]
    lines += [f"         {result.verdict.value:<12} {result.summary}" for result in report.results]
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def run_graph_rollout(
    settings: Settings,
    *,
    graph: str,
    environment: str,
    once: bool,
    target: TargetKind,
    remote: str | None,
    as_json: bool,
    console: Console,
) -> int:
    """One pass (``once``) or passes until the graph canary is promoted or rolled back; the
    exit code: 1 rolled back (by this pass, with ``once``), else 0 (promoted, nothing to walk,
    still walking after ``once``, or another walker holds the graph's lease).

    Only the holder of the graph's lease analyses and commits (see
    :mod:`controller.rollout.graph_reconcile`); it is released when this returns."""
    deployed = build_target(settings, target)
    workspace = gitops_workspace(settings, remote)
    rollout = GraphRollout(
        workspace=workspace,
        target=deployed if isinstance(deployed, GraphInventory) else None,
        metrics=build_metrics(settings, target),
        lease=build_lease(settings, workspace),
    )
    reports: list[GraphPassReport] = []
    printed: list[tuple[object, ...]] = []

    def on_pass(report: GraphPassReport) -> None:
        reports.append(report)
        if as_json:
            return
        key = (report.weight, report.phase, report.action, report.detail)
        if printed and printed[-1] == key and not report.results and report.commit is None:
            return  # piped, a pass that says nothing new prints nothing
        printed.append(key)
        _print_pass(report, console)

    try:
        if once:
            on_pass(rollout.reconcile(environment, graph))
        else:
            rollout.run(
                environment, graph, poll_seconds=settings.rollout_poll_interval_seconds,
                on_pass=on_pass,
            )  # fmt: skip
    finally:
        # Walked to its end, one pass done, or stopped: another walker may act at once.
        if rollout.lease is not None:
            rollout.lease.release_all()
    if as_json:
        console.print_json(json.dumps({"passes": [r.as_dict() for r in reports]}))
    last = reports[-1]
    return 1 if last.outcome is Outcome.ROLLED_BACK or last.action == "rollback" else 0
