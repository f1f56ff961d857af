"""The graph section of ``sluice status``: each InferenceGraph's members, where each sits, the
version and phase of its release, and the share of the graph's requests it took.

Everything here is pure, over plain values:

- :func:`graph_members` walks an InferenceGraph object (as the Kubernetes API returns it) from
  its ``root`` node through ``nodeName`` steps into one :class:`MemberPlace` per ``serviceName``
  step it reaches: the member InferenceService, the node and step it sits at
  (``by-regime/volatile``, ``blend-inputs/volatile``) and the Switch step above it, the
  regime it serves (``by-regime/black-swan`` for the Ensemble's members);
- :func:`step_calls_query` is the PromQL that counts the graph's step calls over
  :data:`WINDOW` (the router's ``sluice_graph_step_*`` series, named as the environment's
  metrics profile names them), and :func:`traffic_shares` turns its samples into shares of
  the graph's requests: per member place and per Switch step;
- :func:`router_state` reads the graph router's state from the ``status`` KServe writes on the
  object (Ready, not ready, stopped, or no status yet);
- :func:`graph_section` joins the members with the release rows of ``sluice status`` into the
  JSON ``sluice status --json`` prints under ``graphs`` (and the status page of ``sluice serve``
  draws, :mod:`controller.status.graph_page`); :func:`graph_table` and :func:`graph_notes` draw
  it for a terminal.

The graph's requests are the requests that entered its ``root`` node, counted from the step
series alone: the router counts only the calls it makes to services, so a node's requests
are its first step's calls for a Sequence, the most calls of any step for an Ensemble (each
is called once per request), and the sum over its steps for a Switch or a Splitter (each
request takes one); a ``nodeName`` step's calls are its node's requests. A node that two steps
name cannot say which of them sent its requests: those steps' counts are unknown (``-``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from controller.analysis_types import MetricSample
from controller.gates.graph_traffic import step_metric_names
from controller.gates.metrics_profile import MetricsProfile
from controller.status.status_view import weight_text

__all__ = [
    "WINDOW",
    "MemberPlace",
    "StepKey",
    "TrafficShares",
    "environment_notes",
    "graph_members",
    "graph_notes",
    "graph_section",
    "graph_table",
    "requests_text",
    "router_state",
    "share_text",
    "step_calls",
    "step_calls_query",
    "traffic_shares",
]

#: The window the shares are counted over: recent, and long enough for a quiet graph.
WINDOW = "5m"
#: The node KServe's router enters first (:data:`controller.manifests.inference_graph.ROOT_NODE`,
#: not imported: that module loads the CRD's schema validator, which status has no use for).
ROOT_NODE = "root"

Row = Mapping[str, Any]
#: A step series' ``node_name``, ``step_name`` and ``service_name`` (empty for a URL step).
StepKey = tuple[str, str, str]


@dataclass(frozen=True)
class MemberPlace:
    """One ``serviceName`` step the graph's root reaches: which InferenceService it calls, at
    which node and step (the step's name, else its index, as the step series label it), and
    the innermost Switch step on the way there (None: no Switch decides whether it is called)."""

    service: str
    node: str
    step: str
    regime: tuple[str, str] | None = None

    @property
    def at(self) -> str:
        """``node/step``: where the member sits."""
        return f"{self.node}/{self.step}"


def _nodes(graph: Mapping[str, Any]) -> Mapping[str, Any]:
    nodes = (graph.get("spec") or {}).get("nodes")
    return nodes if isinstance(nodes, Mapping) else {}


def _steps(node: Any) -> list[Mapping[str, Any]]:
    steps = node.get("steps") if isinstance(node, Mapping) else None
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def _step_name(step: Mapping[str, Any], index: int) -> str:
    """The step's name, else its index: the ``step_name`` label of its series."""
    return str(step.get("name") or index)


def graph_members(graph: Mapping[str, Any]) -> list[MemberPlace]:
    """Every ``serviceName`` step reached from ``root``, depth first in step order (a member
    reached twice, as a Switch's branch and in an Ensemble, is listed at each place)."""
    nodes = _nodes(graph)
    places: list[MemberPlace] = []

    def walk(name: str, regime: tuple[str, str] | None, path: tuple[str, ...]) -> None:
        node = nodes.get(name)
        if name in path or not isinstance(node, Mapping):
            return  # a cycle or a missing node: KServe's webhook refuses both
        switch = node.get("routerType") == "Switch"
        for index, step in enumerate(_steps(node)):
            label = _step_name(step, index)
            below = (name, label) if switch else regime
            if step.get("serviceName"):
                places.append(MemberPlace(str(step["serviceName"]), name, label, below))
            elif step.get("nodeName"):
                walk(str(step["nodeName"]), below, (*path, name))

    walk(ROOT_NODE, None, ())
    return places


def _quoted(value: str) -> str:
    """A PromQL string's contents."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def step_calls_query(graph: str, namespace: str, profile: MetricsProfile) -> str:
    """The graph's step calls over :data:`WINDOW`, by node, step and member."""
    counter = step_metric_names(profile).requests
    selector = f'{profile.namespace_label}="{_quoted(namespace)}", graph_name="{_quoted(graph)}"'
    return (
        f"sum by (node_name, step_name, service_name) (increase({counter}{{{selector}}}[{WINDOW}]))"
    )


def step_calls(samples: Iterable[MetricSample]) -> dict[StepKey, float]:
    """The query's samples by node, step and member (NaN and negative values left out)."""
    calls: dict[StepKey, float] = {}
    for sample in samples:
        if not math.isfinite(sample.value) or sample.value < 0:
            continue
        labels = sample.labels
        key = (
            labels.get("node_name", ""),
            labels.get("step_name", ""),
            labels.get("service_name", ""),
        )
        calls[key] = calls.get(key, 0.0) + sample.value
    return calls


@dataclass(frozen=True)
class TrafficShares:
    """The graph's requests over the window and, per ``(node, step)``, that step's calls and
    their share of the requests (None: not known)."""

    requests: float | None
    calls: Mapping[tuple[str, str], float | None]

    def share(self, node: str, step: str) -> float | None:
        """The step's calls as a fraction of the graph's requests (None: unknown, or none)."""
        calls = self.calls.get((node, step))
        if calls is None or not self.requests:
            return None
        return calls / self.requests


def traffic_shares(graph: Mapping[str, Any], calls: Mapping[StepKey, float]) -> TrafficShares:
    """Each step's calls and the graph's requests (the module docstring says how a node's
    requests are told from its steps' calls)."""
    nodes = _nodes(graph)
    named: dict[str, int] = {}
    for node in nodes.values():
        for step in _steps(node):
            if step.get("nodeName"):
                target = str(step["nodeName"])
                named[target] = named.get(target, 0) + 1
    counted: dict[tuple[str, str], float | None] = {}

    def requests(name: str, path: tuple[str, ...]) -> float | None:
        node = nodes.get(name)
        if name in path or not isinstance(node, Mapping):
            return None
        counts = []
        for index, step in enumerate(_steps(node)):
            label = _step_name(step, index)
            count: float | None
            if step.get("nodeName"):
                child = str(step["nodeName"])
                count = requests(child, (*path, name)) if named.get(child) == 1 else None
            else:
                count = calls.get((name, label, str(step.get("serviceName") or "")), 0.0)
            counted[name, label] = count
            counts.append(count)
        kind = node.get("routerType")
        if not counts:
            return None
        if kind == "Sequence":
            return counts[0]
        known = [c for c in counts if c is not None]
        if kind == "Ensemble":
            return max(known) if known else None
        return sum(known) if len(known) == len(counts) else None

    total = requests(ROOT_NODE, ())
    return TrafficShares(total, counted)


def router_state(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The graph router's state from the object's ``status``, JSON-ready: ``phase`` is
    ``Ready``, ``NotReady`` (its ``Ready`` condition False or Unknown, with the condition's
    reason and message), ``Stopped`` (KServe's stop annotation) or ``Pending`` (no status yet:
    KServe writes none until every member InferenceService has an endpoint); ``url`` is where
    the graph answers while Ready."""
    status = graph.get("status")
    status = status if isinstance(status, Mapping) else {}
    listed = status.get("conditions")
    conditions = {
        str(c.get("type")): c
        for c in (listed if isinstance(listed, list) else ())
        if isinstance(c, Mapping)
    }
    ready = conditions.get("Ready") or {}
    stopped = (conditions.get("Stopped") or {}).get("status") == "True"
    if not status:
        phase = "Pending"
    elif stopped:
        phase = "Stopped"
    elif ready.get("status") == "True":
        phase = "Ready"
    else:
        phase = "NotReady"
    return {
        "phase": phase,
        "ready": ready.get("status"),
        "reason": ready.get("reason") or None,
        "message": ready.get("message") or None,
        "url": status.get("url") or None,
    }


def graph_section(
    graph: Mapping[str, Any],
    *,
    environment: str,
    releases: Mapping[str, Row],
    calls: Mapping[StepKey, float] | None,
    traffic_note: str = "",
) -> dict[str, Any]:
    """One graph of ``environment``, JSON-ready: its router's state (:func:`router_state`), its
    members with their releases' version and phase (``releases``: the status rows by
    InferenceService name) and shares of the graph's requests over :data:`WINDOW` (``calls``
    None: not known, ``traffic_note`` says why)."""
    metadata = graph.get("metadata") or {}
    name = str(metadata.get("name", "?"))
    members = graph_members(graph)
    shares = traffic_shares(graph, calls) if calls is not None else None
    notes = [traffic_note] if traffic_note else []
    if shares is not None and not shares.requests:
        notes.append(
            f"no step calls counted in the last {WINDOW} (only the local target's graph router "
            "exports them; KServe's exports none): shares are -"
        )
    rows = []
    for place in members:
        row = releases.get(place.service)
        rows.append(
            {
                "inferenceService": place.service,
                "node": place.node,
                "step": place.step,
                "at": place.at,
                "regime": {"node": place.regime[0], "step": place.regime[1]}
                if place.regime
                else None,
                "model": row.get("model") if row else None,
                "version": row.get("version") if row else None,
                "serving": row.get("serving") if row else None,
                "canary": _canary(row) if row else None,
                "phase": row.get("phase") if row else None,
                "calls": shares.calls.get((place.node, place.step)) if shares else None,
                "share": shares.share(place.node, place.step) if shares else None,
            }
        )
    unknown = sorted({place.service for place in members if place.service not in releases})
    if unknown:
        notes.append(
            f"{', '.join(unknown)}: no release of {environment} serves "
            f"{'it' if len(unknown) == 1 else 'them'} (its sluice.yaml): no version or phase"
        )
    switches = [
        (node, _step_name(step, index))
        for node, spec in _nodes(graph).items()
        if isinstance(spec, Mapping) and spec.get("routerType") == "Switch"
        for index, step in enumerate(_steps(spec))
    ]
    return {
        "environment": environment,
        "name": name,
        "namespace": str(metadata.get("namespace") or "default"),
        "router": router_state(graph),
        "window": WINDOW,
        "requests": shares.requests if shares else None,
        "members": rows,
        "regimes": [
            {
                "node": node,
                "step": step,
                "calls": shares.calls.get((node, step)) if shares else None,
                "share": shares.share(node, step) if shares else None,
            }
            for node, step in switches
        ],
        "notes": notes,
    }


def _canary(row: Row) -> str | None:
    """The release's canary as the status table shows it (None: no canary)."""
    text = weight_text(row)
    return None if text == "-" else text


def share_text(share: float | None) -> str:
    """``61%``, ``4.5%`` (one decimal under 10 %) or ``-``."""
    if share is None or not math.isfinite(share):
        return "-"
    percent = share * 100
    # Decide on the rounded value: a measured 9.99 % is "10%", as 10.01 % is, not "10.0%".
    return f"{percent:.1f}%" if 0 < round(percent, 1) < 10 else f"{percent:.0f}%"


def requests_text(requests: float | None) -> str:
    """The graph's requests over the window, ``1,234`` or ``-`` (not known)."""
    return "-" if requests is None else f"{round(requests):,}"


#: The table's columns; when a terminal is too narrow, ``_DROPPABLE`` go, in order.
_HEADERS = ("member", "at", "regime", "serving", "canary", "phase", "share")
_DROPPABLE = ("regime", "canary")
#: Columns that fold rather than squeeze the others when even the rest do not fit.
_FOLDING = ("member", "at")
#: Per column: one space of padding each side and a border; plus the closing border.
_COLUMN_OVERHEAD = 3


def _member_cells(member: Row) -> dict[str, str]:
    regime = member.get("regime")
    return {
        "member": str(member["inferenceService"]),
        "at": str(member["at"]),
        "regime": str(regime["step"]) if regime else "-",
        "serving": str(member.get("serving") or "-"),
        "canary": str(member.get("canary") or "-"),
        "phase": str(member.get("phase") or "-"),
        "share": share_text(member.get("share")),
    }


def graph_table(section: Row, *, width: int = 120) -> Table:
    """The graph's members: where each sits, its regime (the Switch step above it), what
    serves, the canary, the phase and the share of the graph's requests. No cell is cut: on a
    terminal ``width`` columns wide, regime and canary are dropped in that order until the
    rest fit (``--json`` has them all), and past that member and at fold."""
    title = (
        f"InferenceGraph {section['name']} in {section['environment']}: "
        f"{requests_text(section.get('requests'))} requests routed in the last "
        f"{section['window']}"
    )
    cells = [_member_cells(member) for member in section["members"]]
    widths = {h: max((len(c[h]) for c in cells), default=0) for h in _HEADERS}
    widths = {h: max(w, len(h)) for h, w in widths.items()}
    headers = list(_HEADERS)
    for dropped in _DROPPABLE:
        if 1 + sum(widths[h] + _COLUMN_OVERHEAD for h in headers) <= width:
            break
        headers.remove(dropped)
    table = Table(title=title, expand=False)
    for header in headers:
        folds = header in _FOLDING
        table.add_column(
            header, overflow="fold", no_wrap=not folds, min_width=None if folds else widths[header]
        )
    for member in cells:
        table.add_row(*(Text(member[h]) for h in headers))
    return table


def graph_notes(section: Row) -> list[str]:
    """Lines under the graph's table: the share of each Switch step (the regimes), then why
    anything shows ``-``."""
    lines = []
    regimes: Sequence[Row] = section.get("regimes") or ()
    if regimes and section.get("requests"):
        shares = ", ".join(f"{r['node']}/{r['step']} {share_text(r.get('share'))}" for r in regimes)
        lines.append(f"regimes: {shares}")
    lines += list(section.get("notes") or ())
    return lines


def environment_notes(problems: Mapping[str, str]) -> list[str]:
    """One line per reason the graphs of some environments could not be listed, naming them."""
    by_message: dict[str, list[str]] = {}
    for environment, message in sorted(problems.items()):
        by_message.setdefault(message, []).append(environment)
    return [f"graphs of {', '.join(envs)}: {message}" for message, envs in by_message.items()]
