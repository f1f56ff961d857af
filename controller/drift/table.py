"""The drift verdict as a terminal table: one row per feature, then the dataset's line; with
``--by``, a second table with one row per slice, notes on what the slices were compared with,
then the slices' line. With ``--outcome``, a line with the whole file's outcome and (with
``--by``) a table of each slice's, beside the training values.

A person reading ``sluice drift`` wants to see, per feature, which statistic decided, how far it
is from its threshold and which way the comparison goes (a p-value drifts *below* its threshold,
a distance *at or above* it), without knowing Evidently's conventions by heart. Kept apart from
the command so the layout can be tested with plain values and reused by the HTML report.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from controller.drift.detector import DatasetDrift, DriftMethod, FeatureDrift
from controller.drift.outcomes import OutcomeKind, OutcomeReport, OutcomeValue
from controller.drift.slices import SlicedDrift, slice_label, top_drifted

__all__ = [
    "SHORT_STATISTIC_NAMES",
    "drift_table",
    "format_outcome",
    "format_outcome_change",
    "format_threshold",
    "format_value",
    "outcome_heading",
    "outcome_line",
    "outcome_table",
    "reference_notes",
    "slice_table",
    "slices_line",
    "verdict_line",
]

#: Evidently's statistic names, shortened so the table fits an 80-column terminal (the width of
#: a pipe or CI log). Wasserstein is always the normed distance, JS is Jensen-Shannon; the JSON
#: and the HTML report carry Evidently's full names.
SHORT_STATISTIC_NAMES: dict[DriftMethod, str] = {
    "ks": "K-S p",
    "chisquare": "chi² p",
    "z": "z-test p",
    "wasserstein": "Wasserstein",
    "jensenshannon": "JS distance",
    "psi": "PSI",
}


def format_value(value: float) -> str:
    """A statistic for people: four decimals, or scientific notation for tiny p-values."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4f}"


def format_threshold(result: FeatureDrift) -> str:
    """The threshold with the comparison that means drift (Evidently's, see ``is_drift``)."""
    if result.method == "ks":
        return f"p ≤ {result.threshold:g}"
    if result.method in ("chisquare", "z"):
        return f"p < {result.threshold:g}"
    return f"≥ {result.threshold:g}"


def verdict_line(result: DatasetDrift) -> str:
    """One line: the dataset's verdict, the drifted share against the configured share."""
    drifted = result.drifted_features
    names = ", ".join(drifted) or "none"
    head = "DRIFT" if result.drifted else "NO DRIFT"
    comparison = "≥" if result.drifted else "<"
    return (
        f"{head}: {len(drifted)} of {len(result.features)} features drifted "
        f"({result.drifted_share:.0%} {comparison} drift share {result.drift_share:.0%}): {names}"
    )


def drift_table(result: DatasetDrift, *, title: str | None = None) -> Table:
    """A Rich table of every feature's verdict; ``≈`` marks values computed from a sample."""
    table = Table(title=title, title_justify="left")
    table.add_column("feature", no_wrap=True)
    table.add_column("kind")
    table.add_column("statistic")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("drift", no_wrap=True)
    for feature in result.features:
        value = format_value(feature.value)
        table.add_row(
            feature.feature,
            feature.kind,
            SHORT_STATISTIC_NAMES.get(feature.method, feature.statistic),
            f"≈{value}" if feature.approximate else value,
            format_threshold(feature),
            Text("✗ yes", style="bold red") if feature.drifted else Text("✓ no", style="green"),
        )
    if any(feature.approximate for feature in result.features):
        table.caption = "≈ computed from the reference profile's sample, not every training row"
        table.caption_justify = "left"
    return table


def _score(feature: FeatureDrift) -> str:
    value = format_value(feature.value)
    return f"≈{value}" if feature.approximate else value


def slices_line(sliced: SlicedDrift) -> str:
    """One line: which slices drift, of how many judged, and how many were not judged."""
    judged = [part for part in sliced.slices if part.drift is not None]
    skipped = len(sliced.slices) - len(judged)
    drifted = [slice_label(value) for value in sliced.drifted_values]
    head = "SLICES DRIFT" if drifted else "NO SLICE DRIFTS"
    names = f" ({', '.join(drifted)})" if drifted else ""
    rest = f"; {skipped} not judged" if skipped else ""
    return (
        f"{head} by {sliced.column}: {len(drifted)} of {len(judged)} judged slices drifted"
        f"{names}{rest}"
    )


def reference_notes(sliced: SlicedDrift) -> list[str]:
    """What the slices were compared with, when a reader could take it for something else:
    the pooled profile (no per-value profiles for the column), or, with per-value profiles,
    the values that had none of their own."""
    column = sliced.column
    if sliced.reference == "pooled":
        why = (
            f"the version's per-value training profiles are by {sliced.profiles_by}, not {column}"
            if sliced.profiles_by is not None
            else f"the version logged no training profile per {column}"
        )
        return [
            f"Note: each slice is compared with the whole (pooled) training profile: {why}. A "
            f"{column} with a distribution of its own differs from the training mix even when "
            "nothing changed."
        ]
    fallback = sliced.fallback_values
    if not fallback:
        return []
    values = ", ".join(slice_label(value) for value in fallback)
    return [
        f"Note: no training profile of its own, compared with the whole (pooled) training "
        f"profile: {values} (the version's profiles by {column}: "
        f"{', '.join(sliced.profiled_values)})."
    ]


def slice_table(sliced: SlicedDrift) -> Table:
    """A Rich table with a row per slice: its rows, (with per-slice profiles) the training rows
    it is compared with, drifted features, verdict and the drifted feature farthest past its
    threshold (``≈``: computed from the profile's sample)."""
    own = sliced.reference == "per-slice"
    against = "its own training profile" if own else "the whole training profile"
    table = Table(title=f"By {sliced.column}: each slice against {against}", title_justify="left")
    table.add_column(sliced.column)
    table.add_column("rows", justify="right", no_wrap=True)
    if own:
        table.add_column("trained on", justify="right", no_wrap=True)
    table.add_column("drifted", justify="right", no_wrap=True)
    table.add_column("verdict")
    table.add_column("top drifted feature")
    table.add_column("score", justify="right", no_wrap=True)
    for part in sliced.slices:
        head = [slice_label(part.value), f"{part.rows:,}"]
        if own:
            trained = part.reference.rows if part.reference is not None else 0
            head.append(f"{trained:,}" if part.own_reference else f"all {trained:,}")
        if part.drift is None:
            table.add_row(*head, "-", Text(part.skipped or "", style="dim"), "-", "-")
            continue
        top = top_drifted(part.drift)
        table.add_row(
            *head,
            f"{len(part.drift.drifted_features)} / {len(part.drift.features)}",
            Text("✗ DRIFT", style="bold red")
            if part.drift.drifted
            else Text("✓ no drift", style="green"),
            top.feature if top is not None else "-",
            _score(top) if top is not None else "-",
        )
    return table


def _number(value: float, sign: str = "") -> str:
    """A mean for people: whole numbers from 1,000, two decimals from 1, else four."""
    size = abs(value)
    decimals = 0 if size >= 1_000 else 2 if size >= 1 else 4
    return f"{value:{sign},.{decimals}f}"


def format_outcome(kind: OutcomeKind, value: float | None) -> str:
    """An outcome for people: a rate as a percentage, a mean as :func:`_number`; ``-`` when
    unknown."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return format_value(value)
    return f"{value:.1%}" if kind == "rate" else _number(value)


def format_outcome_change(kind: OutcomeKind, outcome: OutcomeValue) -> str:
    """The change from training: percentage points for a rate, the difference (and its share
    of the training value) for a mean; ``-`` when the training value is unknown."""
    change = outcome.change
    if change is None or outcome.training is None:
        return "-"
    if not math.isfinite(change):
        return format_value(change)
    if kind == "rate":
        return f"{change * 100:+.1f} pp"
    shown = _number(change, "+")
    return f"{shown} ({change / outcome.training:+.0%})" if outcome.training else shown


def outcome_heading(report: OutcomeReport) -> str:
    """What the outcome is and that nothing is judged on it."""
    kind = "a rate (0/1)" if report.kind == "rate" else "a mean"
    return f"Outcome {report.name}, {kind}, not judged"


def outcome_line(report: OutcomeReport) -> str:
    """One line: the whole file's outcome, its rows and the training value with the change."""
    whole = report.whole
    line = (
        f"{outcome_heading(report)}: {format_outcome(report.kind, whole.value)} over "
        f"{whole.rows:,} rows; training {format_outcome(report.kind, whole.training)}"
    )
    change = format_outcome_change(report.kind, whole)
    return line if change == "-" else f"{line}, {change}"


def outcome_table(report: OutcomeReport) -> Table:
    """A Rich table with a row per slice: the rows with the outcome, its rate or mean, the
    training value of the slice's own training rows and the change (``--outcome`` with
    ``--by``)."""
    column = report.by or ""
    title = f"{report.name} {report.kind} by {column}: reported, not judged"
    table = Table(title=title, title_justify="left")
    table.add_column(column)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column(f"{report.name} {report.kind}", justify="right", no_wrap=True)
    table.add_column("training", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    for part in report.slices:
        outcome = part.outcome
        table.add_row(
            slice_label(part.value),
            f"{outcome.rows:,}",
            format_outcome(report.kind, outcome.value),
            format_outcome(report.kind, outcome.training),
            format_outcome_change(report.kind, outcome),
        )
    return table
