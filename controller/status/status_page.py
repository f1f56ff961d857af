"""The read-only page at ``/`` of ``sluice serve``: releases, phases, gates and canary charts,
each InferenceGraph's members by regime, and each model's path through the promotion pipeline.

Server-rendered HTML with inline SVG charts drawn here: no script, no stylesheet or font from
elsewhere, so it works on a machine without network and in any browser. Everything here is
pure: rows and graph sections (the JSON of ``sluice status --json``) and chart series in, one
HTML document out. The series come from Prometheus range queries
(:mod:`controller.commands.status`); the graphs' sections are laid out by
:mod:`controller.status.graph_page`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.status.graph_page import GRAPH_STYLE, graph_sections_html
from controller.status.html_parts import escape as _e
from controller.status.html_parts import release_anchor
from controller.status.status_view import (
    format_duration,
    in_phase_text,
    next_analysis_text,
    status_notes,
    weight_text,
)

__all__ = ["CanaryChart", "Series", "render_status_page", "svg_chart"]

Row = Mapping[str, Any]

_COLORS = {"canary": "#d9480f", "primary": "#1c7ed6"}
_VERDICT_COLORS = {
    "pass": "#2b8a3e",
    "fail": "#c92a2a",
    "error": "#e67700",
    "inconclusive": "#868e96",
}


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``role`` is ``canary`` or ``primary``; points are (epoch, value)."""

    role: str
    label: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CanaryChart:
    """One metric of a canary over its rollout, canary against primary."""

    metric: str
    title: str
    unit: str
    start: float
    end: float
    series: tuple[Series, ...] = ()
    #: Why there is nothing to draw (Prometheus unreachable, no requests yet).
    note: str = ""


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def _bounds(values: Sequence[float], metric: str) -> tuple[float, float]:
    low, high = min(values), max(values)
    if metric == "success-rate":
        high = max(high, 100.0)
        low = min(low, 99.0)
    elif metric == "p99":
        low = 0.0
    if high - low < 1e-9:
        high = low + 1.0
    pad = (high - low) * 0.05
    return (low - pad if metric != "p99" else low), high + pad


def svg_chart(chart: CanaryChart, *, width: int = 560, height: int = 220) -> str:
    """An inline SVG line chart of the chart's series over ``[start, end]``."""
    left, right, top, bottom = 64, 12, 44, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in chart.series for _, v in s.points if math.isfinite(v)]
    parts = [
        f'<svg class="chart" data-metric="{_e(chart.metric)}" role="img" '
        f'aria-label="{_e(chart.title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_e(chart.title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{_e(chart.title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#ced4da"/>',
    ]
    span = max(chart.end - chart.start, 1.0)
    for fraction in (0.0, 0.5, 1.0):
        x = left + plot_w * fraction
        stamp = time.strftime("%H:%M:%S", time.localtime(chart.start + span * fraction))
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[fraction]
        parts.append(
            f'<text x="{x:.1f}" y="{height - 12}" text-anchor="{anchor}" class="axis">'
            f"{stamp}</text>"
        )
    if not values:
        note = chart.note or "no data yet"
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'class="nodata">{_e(note)}</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    low, high = _bounds(values, chart.metric)
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        value = low + (high - low) * fraction
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e9ecef"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{_number(value)}{_e(chart.unit)}</text>"
        )

    def x_of(t: float) -> float:
        return left + plot_w * min(max((t - chart.start) / span, 0.0), 1.0)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    legend_x = float(left)
    for series in chart.series:
        color = _COLORS.get(series.role, "#495057")
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for t, v in series.points:
            if math.isfinite(v):
                segment.append(f"{x_of(t):.1f},{y_of(v):.1f}")
            elif segment:
                segment = []
                segments.append(segment)
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            elif points:
                parts.append(
                    f'<polyline class="series" data-role="{_e(series.role)}" fill="none" '
                    f'stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>'
                )
        parts.append(
            f'<rect x="{legend_x:.1f}" y="27" width="10" height="3" fill="{color}"/>'
            f'<text x="{legend_x + 14:.1f}" y="33" fill="{color}" class="legend">'
            f"{_e(series.label)}</text>"
        )
        legend_x += 30 + 6.5 * len(series.label)
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #212529; background: #f8f9fa; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 8px; }
.meta { color: #868e96; margin-bottom: 16px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; }
section.release { background: #fff; border: 1px solid #dee2e6; border-radius: 6px;
  padding: 12px 16px; margin: 16px 0; }
.phase { display: inline-block; padding: 0 6px; border-radius: 4px; background: #e7f5ff; }
.verdict { font-weight: 600; }
.notes { margin: 8px 0; padding-left: 18px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 8px; }
svg .axis { font-size: 11px; fill: #868e96; } svg .chart-title { font-size: 13px; }
svg .legend { font-size: 12px; } svg .nodata { font-size: 13px; fill: #868e96; }
"""


def _summary_table(rows: Sequence[Row], now: float) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("environment", "model", "serving", "canary", "phase", "in phase", "next analysis")
    )
    body = "".join(
        "<tr>"
        f"<td>{_e(r['environment'])}</td>"
        f'<td><a href="#{_e(_anchor(r))}">{_e(r["model"])}</a></td>'
        f"<td>{_e(r.get('serving') or '-')}</td>"
        f"<td>{_e(weight_text(r))}</td>"
        f'<td><span class="phase">{_e(r["phase"])}</span></td>'
        f"<td>{_e(in_phase_text(r, now))}</td>"
        f"<td>{_e(next_analysis_text(r, now))}</td>"
        "</tr>"
        for r in rows
    )
    return f'<table class="releases"><tr>{head}</tr>{body}</table>'


def _anchor(row: Row) -> str:
    return release_anchor(row["environment"], row["model"])


def _gates(row: Row) -> str:
    gates = row.get("gates") or ()
    if not gates:
        return '<p class="gates">last gates: none yet</p>'
    where = f" ({_e(row['gatesFrom'])})" if row.get("gatesFrom") else ""
    lines = "".join(
        "<tr>"
        f'<td class="verdict" style="color:{_VERDICT_COLORS.get(g["verdict"], "#212529")}">'
        f"{_e(g['verdict'])}</td><td>{_e(g.get('gate') or '')}</td><td>{_e(g['summary'])}</td>"
        "</tr>"
        for g in gates
    )
    return f'<p>last gates{where}:</p><table class="gates">{lines}</table>'


def _release(row: Row, charts: Sequence[CanaryChart], now: float) -> str:
    lease = row.get("lease")
    holder = "no controller holds it"
    if isinstance(lease, Mapping):
        holder = str(lease.get("holder") or f"unknown: {lease.get('error')}")
    facts = [
        ("phase", f'<span class="phase">{_e(row["phase"])}</span>'),
        ("serving", _e(row.get("serving") or "-")),
        ("canary", _e(weight_text(row))),
        ("in phase", _e(in_phase_text(row, now))),
        ("next analysis", _e(next_analysis_text(row, now))),
        ("controller", _e(holder)),
        ("target", _e(row.get("target") or "-")),
    ]
    retraining = row.get("retraining")
    if isinstance(retraining, Mapping) and retraining.get("summary"):
        facts.append(("last retraining", _e(retraining["summary"])))
    dl = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    notes = status_notes(row)
    notes_html = (
        '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    charts_html = (
        '<div class="charts">' + "".join(svg_chart(c) for c in charts) + "</div>" if charts else ""
    )
    return (
        f'<section class="release" id="{_e(_anchor(row))}" data-model="{_e(row["model"])}" '
        f'data-environment="{_e(row["environment"])}" data-phase="{_e(row["phase"])}">'
        f"<h2>{_e(row['model'])} in {_e(row['environment'])}</h2>"
        f'<table class="facts">{dl}</table>{_gates(row)}{notes_html}{charts_html}</section>'
    )


def _pipeline(entries: Sequence[Row]) -> str:
    """Each model's path through the promotion pipeline and the evidence of its version (the
    ``pipeline`` of ``sluice status --json``)."""
    if not entries:
        return ""
    items = []
    for entry in entries:
        pieces = "".join(
            f"<li>{'✓' if p['verified'] else '✗'} {_e(p['kind'])} in {_e(p['environment'])}"
            + (
                f": {_e(p['headline'])}"
                if p["verified"] and p.get("headline")
                else f": {_e(p['failed'])} check failed: {_e(p['reason'])}"
                if not p["verified"]
                else ""
            )
            + "</li>"
            for p in entry.get("evidence", ())
        )
        items.append(
            f'<li data-state="{_e(entry["state"])}"><b>{_e(entry["model"])}</b>: '
            f"{_e(entry['line'])}" + (f"<ul>{pieces}</ul>" if pieces else "") + "</li>"
        )
    return f'<section class="pipeline"><h2>promotion</h2><ul>{"".join(items)}</ul></section>'


def render_status_page(
    rows: Sequence[Row],
    charts: Mapping[tuple[str, str], Sequence[CanaryChart]],
    *,
    now: float,
    refresh_seconds: int = 5,
    errors: Sequence[str] = (),
    graphs: Sequence[Row] = (),
    graph_notes: Sequence[str] = (),
    pipeline: Sequence[Row] = (),
) -> str:
    """The whole page; ``charts`` are keyed by (environment, model); ``graphs`` are the graph
    sections of ``sluice status --json`` and ``graph_notes`` why some could not be listed,
    shown under the summary table, then ``pipeline``, each model's path through the promotion
    pipeline. It reloads itself every ``refresh_seconds`` (0: never)."""
    refresh = (
        f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds > 0 else ""
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    problems = "".join(f'<p class="error">{_e(e)}</p>' for e in errors)
    sections = "".join(
        _release(r, charts.get((r["environment"], r["model"]), ()), now) for r in rows
    )
    empty = "" if rows else "<p>No releases: add them to manifests/overlays/ENV/sluice.yaml.</p>"
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{refresh}<title>sluice status</title><style>{_STYLE}{GRAPH_STYLE}</style></head><body>"
        "<h1>sluice status</h1>"
        f'<p class="meta">read-only; as of {stamp}'
        + (f", reloads every {format_duration(refresh_seconds)}" if refresh_seconds > 0 else "")
        + f"</p>{problems}{_summary_table(rows, now)}{empty}"
        f"{graph_sections_html(graphs, graph_notes)}{_pipeline(pipeline)}{sections}</body></html>"
    )
