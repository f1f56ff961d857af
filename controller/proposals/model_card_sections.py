"""The evidence sections of a model card: the holdout metrics against the champion (with which
direction is better for each) and the training-data profile, as GitHub Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from string import Template
from typing import Protocol

from controller.domain import ModelVersion, RunSummary
from controller.quality.data_profile import CategoricalProfile, DataProfile, NumericProfile
from controller.quality.quality_gate import LOWER_IS_BETTER
from controller.text.markdown_text import table_cell
from controller.text.strict_template import fill_template

__all__ = [
    "KEY_METRICS",
    "MAX_PROFILE_FEATURES",
    "ComparedRun",
    "comparison_line",
    "metrics_section",
    "profile_section",
]

#: Metrics shown first, in this order; any other logged metric follows alphabetically.
KEY_METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "calibration_error")
#: Features listed in the profile table; the rest are counted, to keep the card skimmable.
MAX_PROFILE_FEATURES = 12
_CHAMPION_PREFIX = "champion_"

_PROFILE = Template(
    """
<details><summary>Training data: $rows rows, label rate $label_rate</summary>

| feature | kind | summary |
|---|---|---|
$feature_rows

</details>
"""
)


class ComparedRun(Protocol):
    """What the metrics section reads of a card: the candidate's run and the versions around it."""

    @property
    def version(self) -> ModelVersion: ...

    @property
    def run(self) -> RunSummary: ...

    #: The version serving in the environment now; None for a first deploy.
    @property
    def previous_version(self) -> int | None: ...

    #: The current champion; the run's ``champion_version`` param takes precedence.
    @property
    def champion_version(self) -> int | None: ...


def _compared_champion(card: ComparedRun) -> int | None:
    """The champion the run's ``champion_*`` metrics were measured for."""
    recorded = card.run.params.get("champion_version")
    return int(recorded) if recorded is not None else card.champion_version


def _has_champion_metrics(run: RunSummary) -> bool:
    return any(name.startswith(_CHAMPION_PREFIX) for name in run.metrics)


def comparison_line(card: ComparedRun) -> str:
    """One sentence saying what the metrics compare: the candidate against which champion."""
    version = card.version.version
    champion = _compared_champion(card)
    if not card.run.metrics:
        return f"No holdout metrics were logged with v{version}'s run."
    if not _has_champion_metrics(card.run):
        if card.previous_version is None and card.champion_version is None:
            return "No champion to compare: first version in this environment."
        if card.champion_version is None:
            return f"No champion to compare: none existed when v{version} was trained."
        return (
            f"No champion to compare: champion v{card.champion_version} was not scored on "
            f"v{version}'s holdout."
        )
    line = (
        f"v{version} (candidate) against v{champion} (champion), both scored on the same "
        "holdout when the candidate was trained."
    )
    if card.champion_version is not None and card.champion_version != champion:
        line += f" The champion is now v{card.champion_version}."
    return line


def metrics_section(card: ComparedRun, *, keep: int | None = None) -> str:
    """The comparison line and the metrics table (its first ``keep`` rows with ``keep``)."""
    table = _metrics_table(card, card.run, keep=keep)
    return f"{comparison_line(card)}\n\n{table}" if table else comparison_line(card)


def _metric_names(metrics: Mapping[str, float]) -> list[str]:
    own = {name for name in metrics if not name.startswith(_CHAMPION_PREFIX)}
    return [name for name in KEY_METRICS if name in own] + sorted(own - set(KEY_METRICS))


def _metrics_table(card: ComparedRun, run: RunSummary, *, keep: int | None = None) -> str:
    """The metrics table; with ``keep``, its first ``keep`` rows and a row counting the rest."""
    metrics = run.metrics
    names = _metric_names(metrics)
    if not names:
        return ""
    if keep is not None and len(names) > keep:
        more = f"| … | {len(names) - keep:,} more metrics on the MLflow run |"
        return _metrics_table(card, _only(run, names[:keep])) + f"\n{more}"
    version = card.version.version
    if not _has_champion_metrics(run):
        rows = [f"| metric | v{version} |", "|---|---:|"]
        rows += [f"| {_metric_label(name)} | {metrics[name]:.4f} |" for name in names]
        return "\n".join(rows)
    champion = _compared_champion(card)
    rows = [f"| metric | v{version} (candidate) | v{champion} (champion) | Δ | |", _ALIGN]
    for name in names:
        baseline = metrics.get(f"{_CHAMPION_PREFIX}{name}")
        if baseline is None:
            rows.append(f"| {_metric_label(name)} | {metrics[name]:.4f} | – | – | |")
            continue
        delta = metrics[name] - baseline
        shown = f"{delta:+.4f}" if round(delta, 4) != 0 else "0.0000"
        rows.append(
            f"| {_metric_label(name)} | {metrics[name]:.4f} | {baseline:.4f} "
            f"| {shown} | {_verdict(name, delta)} |"
        )
    return "\n".join(rows)


_ALIGN = "|---|---:|---:|---:|---|"


def _only(run: RunSummary, names: list[str]) -> RunSummary:
    """``run`` with only the metrics ``names`` (and their champion counterparts)."""
    wanted = set(names) | {f"{_CHAMPION_PREFIX}{name}" for name in names}
    return replace(run, metrics={k: v for k, v in run.metrics.items() if k in wanted})


def _metric_label(name: str) -> str:
    suffix = " (lower is better)" if name in LOWER_IS_BETTER else ""
    return table_cell(name + suffix)


def _verdict(name: str, delta: float) -> str:
    """Arrow for the direction of the change, ✓/✗ for whether that is better for this metric."""
    if round(delta, 4) == 0:
        return "= same"
    improved = (delta < 0) if name in LOWER_IS_BETTER else (delta > 0)
    arrow = "↑" if delta > 0 else "↓"
    return f"{arrow} ✓ better" if improved else f"{arrow} ✗ worse"


def profile_section(profile: DataProfile) -> str:
    """A folded table of the training data: rows, label rate and each feature in a line."""
    names = sorted(profile.features)
    rows = [
        f"| {table_cell(name)} | {profile.features[name].kind} "
        f"| {_feature_summary(profile, name)} |"
        for name in names[:MAX_PROFILE_FEATURES]
    ]
    if len(names) > MAX_PROFILE_FEATURES:
        rows.append(f"| … | | {len(names) - MAX_PROFILE_FEATURES} more features |")
    label_rate = "not recorded" if profile.label_rate is None else f"{profile.label_rate:.2%}"
    return fill_template(
        _PROFILE,
        {"rows": f"{profile.rows:,}", "label_rate": label_rate, "feature_rows": "\n".join(rows)},
    )


def _feature_summary(profile: DataProfile, name: str) -> str:
    feature = profile.features[name]
    nulls = f" · {feature.nulls:,} nulls" if feature.nulls else ""
    if isinstance(feature, NumericProfile):
        return (
            f"mean {_number(feature.mean)} · std {_number(feature.std)} · "
            f"min {_number(feature.minimum)} · max {_number(feature.maximum)}{nulls}"
        )
    return _categories(feature) + nulls


def _categories(feature: CategoricalProfile) -> str:
    total = sum(feature.frequencies.values())
    ranked = sorted(feature.frequencies.items(), key=lambda item: (-item[1], item[0]))
    top = ", ".join(f"{table_cell(category)} {count / total:.0%}" for category, count in ranked[:3])
    count = len(feature.frequencies)
    noun = "category" if count == 1 else "categories"
    return f"{count} {noun}: {top}" if top else f"{count} {noun}"


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"
