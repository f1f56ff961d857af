"""The graphs of ``sluice status``: each InferenceGraph an environment runs, with its members.

The target lists the graphs (:class:`~controller.ports.GraphInventory`: the local target from
its runtime's state), the environment's ``sluice.yaml`` says which release each member
InferenceService is, and the metrics source (Prometheus) counts the graph's step calls over
the last minutes. What is shown is drawn from them by :mod:`controller.status.graph_view`;
nothing here decides anything. A part that cannot be read leaves a ``-`` and a note, never
the command failing: the releases above the graphs are what ``sluice status`` is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.commands.rollout_backends import TargetKind
from controller.errors import SluiceError
from controller.gates.metrics_profile import MetricsProfile
from controller.ports import GraphInventory, MetricsSource, ReleaseRepository, Target
from controller.rollout.observe import load_environment_config
from controller.status.graph_view import (
    StepKey,
    environment_notes,
    graph_section,
    step_calls,
    step_calls_query,
)

__all__ = ["graph_sections"]

Rows = Sequence[Mapping[str, Any]]


def graph_sections(
    target: Target,
    metrics: MetricsSource | None,
    workspace: ReleaseRepository,
    rows: Rows,
    environment: str | None,
    *,
    kind: TargetKind = "local",
) -> tuple[list[dict[str, Any]], list[str]]:
    """The graph sections of the environments of ``rows`` (and ``environment``), JSON-ready,
    and the lines that say why some could not be listed. ``workspace`` must have been synced
    (it was, for the rows)."""
    environments = sorted({str(r["environment"]) for r in rows} | set(filter(None, [environment])))
    if not isinstance(target, GraphInventory):
        return [], [f"graphs: not shown: the {kind} target does not list InferenceGraphs"]
    sections: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    for name in environments:
        try:
            graphs = target.inference_graphs(name)
            config = load_environment_config(workspace, name) if graphs else None
        except SluiceError as exc:
            problems[name] = exc.message
            continue
        if config is None:
            continue
        by_model = {str(r["model"]): r for r in rows if r["environment"] == name}
        releases = {
            release.inference_service: by_model[release.model]
            for release in config.releases
            if release.model in by_model
        }
        profile = config.rollout.gates.profile
        for graph in graphs:
            calls, note = _step_calls(metrics, graph, profile)
            sections.append(
                graph_section(
                    graph, environment=name, releases=releases, calls=calls, traffic_note=note
                )
            )
    return sections, environment_notes(problems)


def _step_calls(
    metrics: MetricsSource | None, graph: Mapping[str, Any], profile: MetricsProfile
) -> tuple[dict[StepKey, float] | None, str]:
    """The graph's step calls over the window, or None and why they are not known."""
    if metrics is None:
        return None, "no Prometheus configured (SLUICE_PROMETHEUS_URL): shares are -"
    metadata = graph.get("metadata") or {}
    query = step_calls_query(
        str(metadata.get("name", "")), str(metadata.get("namespace") or "default"), profile
    )
    try:
        return step_calls(metrics.query(query)), ""
    except SluiceError as exc:
        return None, f"shares are -: {exc.message}"
