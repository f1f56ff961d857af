"""The drift verdict as one self-contained HTML file, with a small plot per drifted feature.

A drift alert is read by someone deciding whether to retrain, often from a CI artifact or an
attachment, offline. So the report is a single file with no script, no stylesheet or font from
elsewhere and no plotting library: the plots are hand-written SVG bars, small enough to read in
an e-mail client. Every piece of text that came from data (feature and category names, model
names, paths) is escaped.

Numeric features are drawn on the reference profile's own quantile bins, one equal-width slot
per bin: the training data fills each slot about equally, so a shift shows as current bars
piling up at one end. Categorical features show the share of each category side by side.

With ``sluice drift --by COLUMN`` the report adds a table of the slices and a section per slice
(its verdict, its feature table and a plot per drifted feature, drawn from the slice's rows).
With ``--outcome`` it adds the outcome's line, its table by slice (with ``--by``) and its notes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from controller.drift.detector import DatasetDrift, FeatureDrift
from controller.drift.outcomes import OutcomeReport
from controller.drift.slices import SlicedDrift, slice_label, split_by, top_drifted
from controller.drift.statistics import bin_counts
from controller.drift.table import (
    format_outcome,
    format_outcome_change,
    format_threshold,
    format_value,
    outcome_line,
    reference_notes,
    slices_line,
    verdict_line,
)
from controller.quality.data_profile import CategoricalProfile, DataProfile, NumericProfile

__all__ = [
    "Histogram",
    "categorical_histogram",
    "histogram_svg",
    "numeric_histogram",
    "render_report",
]

#: Categories drawn before the rest are folded into "(other)", so a plot stays legible.
MAX_CATEGORIES = 10
_WIDTH, _HEIGHT = 380, 160
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 8, 12, 34
_REFERENCE_COLOUR, _CURRENT_COLOUR = "#8b98a9", "#e8590c"

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.verdict { font-weight: 600; padding: .5em .8em; border-radius: 4px; }
.drift { background: #fde2e1; } .stable { background: #e3f4e1; } .skipped { color: #777; }
table { border-collapse: collapse; } th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dt { color: #666; } dd { margin: 0; }
figure { display: inline-block; margin: 0 1.5em 1.5em 0; vertical-align: top; }
figcaption { font-size: .9em; margin-bottom: .3em; }
svg text { font: 9px system-ui, sans-serif; fill: #444; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; }
""".strip()


@dataclass(frozen=True)
class Histogram:
    """Reference and current shares over the same slots, ready to draw."""

    labels: tuple[str, ...]  # what each slot holds, for tooltips (and categorical x labels)
    reference: tuple[float, ...]
    current: tuple[float, ...]
    boundaries: tuple[str, ...] = ()  # numeric: the edge between slot i and i+1


def _compact(value: float) -> str:
    """A bin edge short enough to sit under a 30-pixel slot."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _shares(counts: Sequence[float]) -> tuple[float, ...]:
    total = float(sum(counts))
    return tuple(float(count) / total if total > 0 else 0.0 for count in counts)


def numeric_histogram(profile: NumericProfile, current: pd.Series) -> Histogram:
    """Shares of reference and current in the profile's bins ``(-inf, e0], ..., (e_last, inf)``."""
    values = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    edges = profile.bin_edges
    labels = [f"≤ {_compact(edges[0])}"] if edges else ["all values"]
    labels += [f"{_compact(low)} – {_compact(high)}" for low, high in pairwise(edges)]
    labels += [f"> {_compact(edges[-1])}"] if edges else []
    return Histogram(
        labels=tuple(labels),
        reference=_shares(profile.bin_counts),
        current=_shares([float(count) for count in bin_counts(values, edges)]),
        boundaries=tuple(_compact(edge) for edge in edges),
    )


def categorical_histogram(
    profile: CategoricalProfile, current: pd.Series, *, max_categories: int = MAX_CATEGORIES
) -> Histogram:
    """Shares per category, reference's most frequent first, then categories new in current.

    Beyond ``max_categories`` the least frequent (on either side) are folded into "(other)".
    """
    reference = pd.Series(profile.frequencies, dtype=np.float64)
    observed = current.dropna().astype(str).value_counts().astype(np.float64)
    ref_share = reference / reference.sum() if reference.sum() > 0 else reference
    cur_share = observed / observed.sum() if observed.sum() > 0 else observed
    table = pd.concat([ref_share.rename("r"), cur_share.rename("c")], axis=1).fillna(0.0)
    table = table.sort_values(["r", "c"], ascending=False, kind="stable")
    if len(table) > max_categories:
        keep = table.max(axis=1).nlargest(max_categories - 1, keep="first").index
        kept = table.loc[[name for name in table.index if name in keep]]
        rest = table.drop(index=keep).sum()
        table = pd.concat([kept, pd.DataFrame([rest], index=["(other)"])])
    return Histogram(
        labels=tuple(str(name) for name in table.index),
        reference=tuple(float(share) for share in table["r"]),
        current=tuple(float(share) for share in table["c"]),
    )


def _rect(x: float, y: float, width: float, height: float, style: str, tip: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0.5):.1f}" height="{height:.1f}" '
        f"{style}><title>{html.escape(tip)}</title></rect>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{html.escape(text)}</text>'


def histogram_svg(histogram: Histogram, *, overlay: bool) -> str:
    """Bars of both shares per slot: overlaid (numeric bins) or side by side (categories)."""
    slots = max(len(histogram.labels), 1)
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    slot = plot_width / slots
    top = max((*histogram.reference, *histogram.current, 1e-9))
    baseline = _TOP + plot_height
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img">',
        f'<line x1="{_LEFT}" y1="{baseline}" x2="{_WIDTH - _RIGHT}" y2="{baseline}" '
        'stroke="#999"/>',
        _text(_LEFT - 4, _TOP + 8, f"{top:.0%}", anchor="end"),
        _text(_LEFT - 4, baseline, "0%", anchor="end"),
    ]
    reference_style = f'fill="{_REFERENCE_COLOUR}"'
    current_style = f'fill="{_CURRENT_COLOUR}"' + (' fill-opacity="0.6"' if overlay else "")
    for index, label in enumerate(histogram.labels):
        ref, cur = histogram.reference[index], histogram.current[index]
        tip = f"{label}: reference {ref:.1%}, current {cur:.1%}"
        x = _LEFT + index * slot + 1
        width = slot - 2 if overlay else (slot - 2) / 2
        ref_height, cur_height = plot_height * ref / top, plot_height * cur / top
        parts.append(_rect(x, baseline - ref_height, width, ref_height, reference_style, tip))
        cur_x = x if overlay else x + width
        parts.append(_rect(cur_x, baseline - cur_height, width, cur_height, current_style, tip))
        if not histogram.boundaries:
            fit = max(int(slot / 5), 3)
            short = label if len(label) <= fit else label[: fit - 1] + "…"
            parts.append(_text(x + (slot - 2) / 2, baseline + 12, short))
    step = 1 if slot >= 30 else 2  # skip every other edge label when they would collide
    for index, edge in enumerate(histogram.boundaries):
        if index % step == 0:
            parts.append(_text(_LEFT + (index + 1) * slot, baseline + 12, edge))
    if histogram.boundaries:
        parts.append(_text(_LEFT + plot_width / 2, baseline + 26, "reference quantile bins"))
    parts.append("</svg>")
    return "".join(parts)


def _feature_plot(result: FeatureDrift, profile: DataProfile, current: pd.DataFrame) -> str:
    feature = profile.features.get(result.feature)
    if feature is None or result.feature not in current.columns:
        return ""
    column = current[result.feature]
    if isinstance(feature, NumericProfile):
        svg = histogram_svg(numeric_histogram(feature, column), overlay=True)
    else:
        svg = histogram_svg(categorical_histogram(feature, column), overlay=False)
    caption = (
        f"{result.feature}: {result.statistic} {format_value(result.value)} "
        f"(drift at {format_threshold(result)})"
    )
    return f"<figure><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>"


def _feature_rows(result: DatasetDrift) -> str:
    rows = []
    for feature in result.features:
        value = format_value(feature.value)
        cells = (
            html.escape(feature.feature),
            html.escape(feature.kind),
            html.escape(feature.statistic),
            html.escape(f"≈{value}" if feature.approximate else value),
            html.escape(format_threshold(feature)),
            "✗ drifted" if feature.drifted else "✓ stable",
        )
        rows.append(
            f'<tr class="{"drift" if feature.drifted else "stable"}"><td>{cells[0]}</td>'
            f"<td>{cells[1]}</td><td>{cells[2]}</td><td class=num>{cells[3]}</td>"
            f"<td class=num>{cells[4]}</td><td>{cells[5]}</td></tr>"
        )
    return "\n".join(rows)


def _result_section(
    result: DatasetDrift, profile: DataProfile, current: pd.DataFrame, *, heading: str
) -> str:
    """One dataset's feature table, then a plot per drifted feature; ``heading`` is the tag of
    the plots' title (h2 for the whole file, h3 inside a slice)."""
    plots = "\n".join(
        plot
        for plot in (_feature_plot(f, profile, current) for f in result.features if f.drifted)
        if plot
    )
    legend = (
        f'<p><span class="swatch" style="background:{_REFERENCE_COLOUR}"></span> reference '
        f'(training) &nbsp; <span class="swatch" style="background:{_CURRENT_COLOUR}"></span> '
        "current</p>"
    )
    drifted_section = (
        f"<{heading}>Drifted features</{heading}>\n{legend}\n{plots}"
        if plots
        else "<p>No feature drifted.</p>"
    )
    note = (
        "<p><small>≈ computed from the reference profile's sample, not every training "
        "row.</small></p>"
        if any(feature.approximate for feature in result.features)
        else ""
    )
    return f"""<table>
<thead><tr><th>feature</th><th>kind</th><th>method</th><th>value</th><th>threshold</th>
<th>drifted</th></tr></thead>
<tbody>
{_feature_rows(result)}
</tbody>
</table>
{note}
{drifted_section}"""


def _slice_summary_rows(by: SlicedDrift) -> str:
    rows = []
    for part in by.slices:
        label = html.escape(slice_label(part.value))
        if part.drift is None:
            cells = ("-", html.escape(part.skipped or ""), "-", "-")
            css = "skipped"
        else:
            top = top_drifted(part.drift)
            cells = (
                f"{len(part.drift.drifted_features)} / {len(part.drift.features)}",
                "✗ drift" if part.drift.drifted else "✓ no drift",
                html.escape(top.feature) if top is not None else "-",
                html.escape(format_value(top.value)) if top is not None else "-",
            )
            css = "drift" if part.drift.drifted else "stable"
        rows.append(
            f'<tr class="{css}"><td>{label}</td><td class=num>{part.rows:,}</td>'
            f"<td class=num>{cells[0]}</td><td>{cells[1]}</td><td>{cells[2]}</td>"
            f"<td class=num>{cells[3]}</td></tr>"
        )
    return "\n".join(rows)


def _slices_section(by: SlicedDrift, profile: DataProfile, current: pd.DataFrame) -> str:
    """A summary table of the slices, then a section per slice judged or not."""
    column = html.escape(by.column)
    verdict_class = "drift" if by.drifted else "stable"
    against = (
        f"the training profile of the same {column}"
        if by.reference == "per-slice"
        else "the whole training profile"
    )
    parts = [
        f"<h2>By {column}</h2>",
        f"<p>Each slice of the current data against {against}; slices of "
        f"fewer than {by.min_rows:,} rows are not judged.</p>",
        *(f"<p>{html.escape(note)}</p>" for note in reference_notes(by)),
        f'<p class="verdict {verdict_class}">{html.escape(slices_line(by))}</p>',
        f"<table>\n<thead><tr><th>{column}</th><th>rows</th><th>drifted</th><th>verdict</th>"
        "<th>top drifted feature</th><th>score</th></tr></thead>\n<tbody>\n"
        f"{_slice_summary_rows(by)}\n</tbody>\n</table>",
    ]
    rows_of = dict(split_by(current, by.column))
    for part in by.slices:
        title = html.escape(f"{by.column} = {slice_label(part.value)} ({part.rows:,} rows)")
        parts.append(f"<section>\n<h2>{title}</h2>")
        if by.reference == "per-slice" and part.reference is not None:
            rows = part.reference.rows
            parts.append(
                f"<p>Against the {rows:,} training rows of this {column}.</p>"
                if part.own_reference
                else f"<p>Against all {rows:,} training rows: no profile of its own.</p>"
            )
        if part.drift is None:
            parts.append(f"<p>Not judged: {html.escape(part.skipped or '')}.</p>")
        else:
            verdict = "drift" if part.drift.drifted else "stable"
            parts.append(
                f'<p class="verdict {verdict}">{html.escape(verdict_line(part.drift))}</p>'
            )
            reference = part.reference or profile
            parts.append(_result_section(part.drift, reference, rows_of[part.value], heading="h3"))
        parts.append("</section>")
    return "\n".join(parts)


def _outcome_section(report: OutcomeReport) -> str:
    """The outcome's line, its notes and, by slice, a row per slice."""
    parts = [
        f"<h2>Outcome {html.escape(report.name)}</h2>",
        f"<p>{html.escape(outcome_line(report))}</p>",
        *(f"<p>{html.escape(note)}</p>" for note in report.notes),
    ]
    if report.slices:
        rows = "\n".join(
            f"<tr><td>{html.escape(slice_label(part.value))}</td>"
            f"<td class=num>{part.outcome.rows:,}</td>"
            f"<td class=num>{html.escape(format_outcome(report.kind, part.outcome.value))}</td>"
            f"<td class=num>{html.escape(format_outcome(report.kind, part.outcome.training))}"
            f"</td><td class=num>{html.escape(format_outcome_change(report.kind, part.outcome))}"
            "</td></tr>"
            for part in report.slices
        )
        parts.append(
            f"<table>\n<thead><tr><th>{html.escape(report.by or '')}</th><th>rows</th>"
            f"<th>{html.escape(report.name)} {report.kind}</th><th>training</th>"
            f"<th>change</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
        )
    return "\n".join(parts)


def render_report(
    result: DatasetDrift,
    profile: DataProfile,
    current: pd.DataFrame,
    *,
    title: str,
    details: Sequence[tuple[str, str]] = (),
    by: SlicedDrift | None = None,
    outcome: OutcomeReport | None = None,
) -> str:
    """The whole report as one HTML document; ``details`` are (label, value) lines shown first,
    ``by`` (``--by``) adds a summary of the slices and a section per slice, and ``outcome``
    (``--outcome``) the outcome's section."""
    verdict_class = "drift" if result.drifted else "stable"
    facts = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in details
    )
    slices = _slices_section(by, profile, current) if by is not None else ""
    kpi = _outcome_section(outcome) if outcome is not None else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{_STYLE}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="verdict {verdict_class}">{html.escape(verdict_line(result))}</p>
<dl>{facts}</dl>
{kpi}
{_result_section(result, profile, current, heading="h2")}
{slices}
</body>
</html>
"""
