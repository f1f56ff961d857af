"""Read one graph's rollout state: its canary form in Git, and what the target serves.

Git says what should serve (the environment's branch: the graph's file, in canary form or not,
and the commit that last changed it, first parent, so a merge is its own); the target says
what does (:class:`~controller.ports.GraphInventory`: the graph as the runtime or the cluster
has it, whose canary annotations and Splitter weights must be the committed ones, and Ready;
a target that cannot be asked is an error of the pass, retried, not a graph that is not
served). Nothing is kept between passes: a restarted ``sluice graph rollout`` reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.manifests.environment import EnvironmentConfig
from controller.manifests.graph_canary import GraphCanary, canary_state
from controller.ports import GraphInventory, ReleaseRepository
from controller.proposals.graph_source import read_graph
from controller.rollout.graph_decide import GraphObservation
from controller.status.graph_view import router_state

__all__ = ["GraphSnapshot", "observe_graph"]


@dataclass(frozen=True)
class GraphSnapshot:
    """What one pass saw: the observation the decision reads, the environment's configuration
    (the policy and the checks) and the namespace the target serves the graph in."""

    observation: GraphObservation
    config: EnvironmentConfig
    namespace: str


def observe_graph(
    workspace: ReleaseRepository,
    target: GraphInventory | None,
    environment: str,
    graph: str,
) -> GraphSnapshot:
    """Sync Git, read the graph and its last change, and ask the target what it serves."""
    with workspace.locked():
        workspace.sync()
        source = read_graph(workspace, environment, graph)
        changes = workspace.changes(source.branch, source.path, 1)
        message = (workspace.message(changes[0].sha) or "") if changes else ""
    canary = canary_state(source.document)
    name = source.config.name
    served, note, namespace = _serving(target, name, graph, canary)
    last = changes[0] if changes else None
    observation = GraphObservation(
        graph=graph,
        environment=name,
        canary=canary,
        commit=last.sha if last else "",
        changed_at=last.time if last else 0.0,
        last_action=last.trailers.get("Sluice-Action") if last else None,
        last_subject=message.partition("\n")[0],
        served=served,
        serving_note=note,
    )
    return GraphSnapshot(observation, source.config, namespace)


def _serving(
    target: GraphInventory | None, environment: str, graph: str, canary: GraphCanary | None
) -> tuple[bool, str, str]:
    """Whether the target serves the committed canary (and why not), and the namespace."""
    if canary is None:
        return False, "", ""
    if target is None:
        return False, "the target does not list InferenceGraphs", ""
    # A target that cannot be asked raises (RemoteUnavailable): a broken tool is retried, and
    # never counts against the step's progress deadline.
    objects = target.inference_graphs(environment)
    found = next((o for o in objects if _name(o) == graph), None)
    if found is None:
        return False, f"{environment} does not serve InferenceGraph {graph} yet", ""
    namespace = str((found.get("metadata") or {}).get("namespace") or "default")
    serving = canary_state(found)
    if serving != canary:
        now = "no canary" if serving is None else f"canary {serving.digest} at {serving.weight}%"
        wanted = f"canary {canary.digest} at {canary.weight}%"
        return False, f"{environment} serves {now}, not {wanted} yet", namespace
    if str(router_state(found)["ready"]) != "True":  # its Ready condition, as status shows it
        return False, f"InferenceGraph {graph} at {canary.weight}% is not Ready yet", namespace
    return True, "", namespace


def _name(document: Mapping[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("name", ""))
