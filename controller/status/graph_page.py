"""The InferenceGraphs on the status page of ``sluice serve``: one section per graph, its router's
state and a table of its members by regime.

The sections are the JSON ``sluice status --json`` prints under ``graphs``
(:func:`controller.status.graph_view.graph_section`): this module only lays them out as HTML.
A graph's table has one group of rows per step of its Switch nodes (the regimes), first the
members no Switch chooses (``any regime``: the classifier every request goes through); each row
is a member where it sits, what serves, its canary, its release's phase and its share of the
graph's requests, beside the regime's own share. Everything shown is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.status.graph_view import requests_text, share_text
from controller.status.html_parts import escape as _e
from controller.status.html_parts import release_anchor

__all__ = ["ANY_REGIME", "GRAPH_STYLE", "graph_sections_html"]

Row = Mapping[str, Any]

#: The label of the members no Switch step chooses: every request may reach them.
ANY_REGIME = "any regime"
_HEADERS = ("regime", "regime's share", "member", "at", "serving", "canary", "phase", "share")

GRAPH_STYLE = """
section.graph { background: #fff; border: 1px solid #dee2e6; border-radius: 6px;
  padding: 12px 16px; margin: 16px 0; }
.router { margin: 0 0 8px; }
.router .phase[data-router="Ready"] { background: #ebfbee; color: #2b8a3e; }
.router .phase[data-router="NotReady"] { background: #fff5f5; color: #c92a2a; }
.router .phase[data-router="Pending"], .router .phase[data-router="Stopped"] {
  background: #f1f3f5; color: #495057; }
table.regimes caption { caption-side: top; text-align: left; color: #868e96; padding: 0 0 4px; }
table.regimes td.regime { font-weight: 600; background: #f8f9fa; }
table.regimes td.share { text-align: right; font-variant-numeric: tabular-nums; }
.canary { display: inline-block; padding: 0 6px; border-radius: 4px; background: #fff4e6;
  color: #d9480f; font-weight: 600; }
.graph-notes { color: #868e96; }
"""


def graph_sections_html(sections: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """Every graph's section, then the lines that say why some environments' graphs could not
    be listed; empty when there is neither."""
    if not sections and not notes:
        return ""
    lines = "".join(f'<p class="graph-notes">{_e(n)}</p>' for n in notes)
    return "".join(_graph(section) for section in sections) + lines


def _graph(section: Row) -> str:
    name, environment = section["name"], section["environment"]
    router: Row = section.get("router") or {}
    phase = str(router.get("phase") or "-")
    why = ": ".join(str(router[k]) for k in ("reason", "message") if router.get(k))
    facts = [
        f'router <span class="phase" data-router="{_e(phase)}">{_e(phase)}</span>'
        + (f" ({_e(why)})" if why else ""),
        f"{_e(requests_text(section.get('requests')))} requests routed in the last "
        f"{_e(section['window'])}",
    ]
    if router.get("url"):
        facts.append(f"<code>{_e(router['url'])}</code>")
    notes: Sequence[str] = section.get("notes") or ()
    notes_html = (
        '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    return (
        f'<section class="graph" id="{_e(f"graph-{environment}-{name}")}" '
        f'data-graph="{_e(name)}" data-environment="{_e(environment)}" '
        f'data-router="{_e(phase)}">'
        f"<h2>InferenceGraph {_e(name)} in {_e(environment)}</h2>"
        f'<p class="router">{" · ".join(facts)}</p>{_table(section)}{notes_html}</section>'
    )


def _groups(section: Row) -> list[tuple[str, str | None, Row | None, list[Row]]]:
    """(label, ``data-regime``, the regime, its members) per group of rows, in the table's order:
    the members no Switch chooses, then each Switch step in the graph's order."""
    members: Sequence[Row] = section.get("members") or ()
    regimes: Sequence[Row] = section.get("regimes") or ()
    several = len({r["node"] for r in regimes}) > 1
    groups: list[tuple[str, str | None, Row | None, list[Row]]] = []
    unchosen = [m for m in members if not m.get("regime")]
    if unchosen:
        groups.append((ANY_REGIME, None, None, unchosen))
    for regime in regimes:
        key = {"node": regime["node"], "step": regime["step"]}
        label = f"{regime['node']}/{regime['step']}" if several else str(regime["step"])
        chosen = [m for m in members if m.get("regime") == key]
        groups.append((label, str(regime["step"]), regime, chosen))
    return groups


def _table(section: Row) -> str:
    environment = section["environment"]
    head = "".join(f"<th>{_e(h)}</th>" for h in _HEADERS)
    body = []
    for label, data_regime, regime, members in _groups(section):
        span = max(len(members), 1)
        attributes = f' data-regime="{_e(data_regime)}"' if data_regime is not None else ""
        where = f' title="{_e(regime["node"])}/{_e(regime["step"])}"' if regime else ""
        first = (
            f'<td class="regime" rowspan="{span}"{where}>{_e(label)}</td>'
            f'<td class="share" rowspan="{span}">'
            f"{_e(share_text(regime.get('share')) if regime else '-')}</td>"
        )
        if not members:
            body.append(f"<tr{attributes}>{first}" + "<td>-</td>" * 6 + "</tr>")
        for index, member in enumerate(members):
            cells = first if index == 0 else ""
            body.append(
                f'<tr{attributes} data-member="{_e(member["inferenceService"])}" '
                f'data-at="{_e(member["at"])}">{cells}{_member_cells(environment, member)}</tr>'
            )
    caption = (
        f"members by regime (the steps of the graph's Switch); shares of the graph's requests "
        f"over the last {section['window']}"
    )
    return (
        f'<table class="regimes"><caption>{_e(caption)}</caption><tr>{head}</tr>'
        f"{''.join(body)}</table>"
    )


def _member_cells(environment: object, member: Row) -> str:
    service = _e(member["inferenceService"])
    model = member.get("model")
    if model:
        anchor = _e(release_anchor(environment, model))
        service = f'<a href="#{anchor}" title="release {_e(model)}">{service}</a>'
    canary, phase = member.get("canary"), member.get("phase")
    canary_html = f'<span class="canary">{_e(canary)}</span>' if canary else "-"
    phase_html = f'<span class="phase">{_e(phase)}</span>' if phase else "-"
    return (
        f"<td>{service}</td><td>{_e(member['at'])}</td>"
        f"<td>{_e(member.get('serving') or '-')}</td><td>{canary_html}</td><td>{phase_html}</td>"
        f'<td class="share">{_e(share_text(member.get("share")))}</td>'
    )
