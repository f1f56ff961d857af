"""The model card: the pull request body a reviewer reads before merging a model version.

A reviewer decides in a minute whether a version may reach an environment, so the card puts
the evidence first: the holdout metrics against the champion scored on the same rows (with
which direction is better for each), the quality gate's verdict, what the model was trained on,
the manifest diff, and what merging will set in motion. It is rendered from templates strictly:
a variable without a value, or a value without a variable, is an error rather than a card with
a hole in it. The output is deterministic, so an unchanged proposal leaves the pull request
body unchanged and the forge does not write it again.

A card never exceeds GitHub's 65,536-character body limit (:mod:`controller.forge_limits`).
A card over it loses, in this order until it fits: the end of the manifest diff (the whole
change is on the pull request's Files changed tab), then the diff and the training-data
profile altogether with the metrics table cut to its first rows, then the metrics table. A
trimmed card says so under its links, with a link to the MLflow run for the full content; the
headline, the comparison line, the gate's verdict and the hidden marker always stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from string import Template

from controller.classification_metrics import LOWER_IS_BETTER
from controller.data_profile import CategoricalProfile, DataProfile, NumericProfile
from controller.domain import ModelVersion, RunSummary
from controller.forge_limits import BODY_LIMIT, fit_body, trimmed_note
from controller.redact import redact

__all__ = [
    "CARD_MARKER",
    "KEY_METRICS",
    "ModelCard",
    "fill_template",
    "render_model_card",
]

#: Metrics shown first, in this order; any other logged metric follows alphabetically.
KEY_METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "calibration_error")
#: The hidden comment that ends every card, so tools can find cards (``sluice:model-card``).
CARD_MARKER = Template("<!-- sluice:model-card model=$model env=$environment version=$version -->")
#: Features listed in the profile table; the rest are counted, to keep the card skimmable.
MAX_PROFILE_FEATURES = 12
#: Metric rows a trimmed card keeps (the key metrics come first).
MAX_TRIMMED_METRICS = 12
#: A diff excerpt shorter than this is not worth showing: the card drops the diff instead.
_MIN_DIFF_EXCERPT = 1_000
_FILES_CHANGED = "this pull request's Files changed tab"
_CHAMPION_PREFIX = "champion_"

_CARD = Template(
    """## $model v$version → $environment

$links$notice

### Holdout metrics

$metrics

- **Quality gate:** $gate
- **Trained on:** $data
$profile
### Manifest change

$diff_block

### What happens on merge

$rollout

$marker
"""
)
_PROFILE = Template(
    """
<details><summary>Training data: $rows rows, label rate $label_rate</summary>

| feature | kind | summary |
|---|---|---|
$feature_rows

</details>
"""
)
_CANARY = Template(
    """1. Argo CD syncs the merge to **$environment**.
2. Canary: v$version takes $steps of the traffic, v$previous serves the rest.
3. Each step waits for every gate to pass: $gates.
4. A failing, erroring or silent gate rolls back to v$previous with a commit that says why."""
)
_SMOKE_FIRST = Template(
    """1. Argo CD syncs the merge to **$environment**.
2. Smoke: v$version's revision starts at 0% of the traffic, and Locust sends it $requests of its
   logged input examples on its tag route; a failed request rolls it back before any client
   request reached it, and only a passing smoke starts the canary.
3. Canary: v$version takes $steps of the traffic, v$previous serves the rest.
4. Each step waits for every gate to pass: $gates.
5. A failing, erroring or silent gate rolls back to v$previous with a commit that says why."""
)
_FIRST_DEPLOY = Template(
    """1. Argo CD syncs the merge to **$environment**.
2. First deploy: straight to 100%, no previous version to canary against."""
)


@dataclass(frozen=True)
class ModelCard:
    """Everything a model card shows; built by the proposal step from registry and Git."""

    model: str
    environment: str
    version: ModelVersion
    #: The version serving in the environment now; None for a first deploy.
    previous_version: int | None
    run: RunSummary
    registry_url: str
    storage_uri: str
    #: The current champion; the run's ``champion_version`` param takes precedence.
    champion_version: int | None
    canary_steps: tuple[int, ...]
    gates: tuple[str, ...]
    diff: str
    profile: DataProfile | None
    #: Requests of the pre-traffic smoke before the first step (rollout.smoke, on by default);
    #: None when the proposal starts the canary at once (the smoke off, a shadow phase).
    smoke_requests: int | None = None


def fill_template(template: Template, values: Mapping[str, object]) -> str:
    """Substitute ``values`` into ``template``; every variable needs a value and every value a
    variable, otherwise :class:`ValueError` names them."""
    wanted = set(template.get_identifiers())
    missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
    if missing or unused or not template.is_valid():
        raise ValueError(
            f"template variables without values: {missing or 'none'}; "
            f"values without variables: {unused or 'none'}"
        )
    return template.substitute(values)


def render_model_card(card: ModelCard, *, limit: int = BODY_LIMIT) -> str:
    """The card as GitHub Markdown, ending with the hidden ``sluice:model-card`` marker, at
    most ``limit`` characters (trimmed as the module docstring says)."""
    profile = _profile(card.profile) if card.profile is not None else ""
    full = _render(card, _fenced("diff", card.diff), profile, _metrics(card), notice="")
    if len(full) <= limit:
        return full
    run = _run_reference(card)
    # 1. The end of the diff: the rest of the card as it is, the diff cut to the room left.
    notice = trimmed_note(
        "the manifest diff is cut", f"The full change is on {_FILES_CHANGED}; the run: {run}."
    )
    rest = _render(card, "", profile, _metrics(card), notice=notice)
    excerpt = _diff_excerpt(card.diff, limit - len(rest))
    if excerpt is not None:
        return _render(card, excerpt, profile, _metrics(card), notice=notice)
    # 2. No diff or profile, the first metric rows; 3. no metrics table either.
    lines = len(card.diff.splitlines())
    no_diff = f"*The diff ({lines:,} lines) is too long for this card: see {_FILES_CHANGED}.*"
    left_out = "the manifest diff and the training-data profile are left out"
    cut: str | None = None
    for metrics, what in (
        (_metrics(card, keep=MAX_TRIMMED_METRICS), f"{left_out}, and the metrics table is cut"),
        (_comparison(card), f"{left_out}, and so is the metrics table"),
    ):
        notice = trimmed_note(what, f"Everything is on {run}; the change on {_FILES_CHANGED}.")
        cut = _render(card, no_diff, "", metrics, notice=notice)
        if len(cut) <= limit:
            return cut
    assert cut is not None
    return fit_body(cut, note=notice, limit=limit)


def _render(card: ModelCard, diff_block: str, profile: str, metrics: str, *, notice: str) -> str:
    identity = {"model": card.model, "environment": card.environment, "version": _version(card)}
    return fill_template(
        _CARD,
        {
            **identity,
            "links": _links(card),
            "notice": f"\n\n{notice}" if notice else "",
            "metrics": metrics,
            "gate": _one_line(card.version.tags.get("sluice.gate_summary", "not recorded")),
            "data": _training_data(card.run.params),
            "profile": profile,
            "diff_block": diff_block,
            "rollout": _rollout(card),
            "marker": fill_template(CARD_MARKER, identity),
        },
    )


def _diff_excerpt(diff: str, room: int) -> str | None:
    """The diff's first lines, fenced, with a line counting the rest, in ``room`` characters;
    None when less than :data:`_MIN_DIFF_EXCERPT` of it would fit."""
    lines = diff.rstrip("\n").split("\n")
    fence_overhead = len(_fenced("diff", diff)) - len(diff.rstrip("\n"))
    budget = room - fence_overhead - len(_more_lines(len(lines)))
    if budget < _MIN_DIFF_EXCERPT:
        return None
    kept, used = 0, 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        kept, used = kept + 1, used + len(line) + 1
    if kept == 0:
        return None
    block = _fenced("diff", "\n".join(lines[:kept])) + _more_lines(len(lines) - kept)
    return block if len(block) <= room else None


def _more_lines(count: int) -> str:
    return f"\n\n*… {count:,} more lines of the diff are on {_FILES_CHANGED}.*"


# -- sections ----------------------------------------------------------------------------------


def _version(card: ModelCard) -> int:
    return card.version.version


def _links(card: ModelCard) -> str:
    run = _run_reference(card) if _is_web_url(card.run.url) else "No MLflow run recorded"
    registry = (
        f"[registry: {card.model} v{_version(card)}]({_link_target(card.registry_url)})"
        if _is_web_url(card.registry_url)
        else f"registry: {card.model} v{_version(card)}"
    )
    return f"{run} · {registry} · artifacts `{redact(card.storage_uri)}`"


def _run_reference(card: ModelCard) -> str:
    """The MLflow run as a link (its id when the registry gave no web URL)."""
    run_id = card.run.run_id
    if _is_web_url(card.run.url):
        return f"[MLflow run `{run_id[:12]}`]({_link_target(card.run.url)})"
    return f"MLflow run `{run_id}`"


def _training_data(params: Mapping[str, str]) -> str:
    data = _one_line(params.get("data", "not recorded"))
    if "holdout_rows" not in params:
        return data
    rows = params["holdout_rows"]
    holdout = f"{int(rows):,}" if rows.isdigit() else rows
    digest = params.get("holdout_digest")
    return f"{data} · holdout {holdout} rows" + (f", digest `{digest}`" if digest else "")


def _compared_champion(card: ModelCard) -> int | None:
    """The champion the run's ``champion_*`` metrics were measured for."""
    recorded = card.run.params.get("champion_version")
    return int(recorded) if recorded is not None else card.champion_version


def _has_champion_metrics(card: ModelCard) -> bool:
    return any(name.startswith(_CHAMPION_PREFIX) for name in card.run.metrics)


def _comparison(card: ModelCard) -> str:
    version = _version(card)
    champion = _compared_champion(card)
    if not card.run.metrics:
        return f"No holdout metrics were logged with v{version}'s run."
    if not _has_champion_metrics(card):
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


def _metrics(card: ModelCard, *, keep: int | None = None) -> str:
    table = _metrics_table(card, keep=keep)
    return f"{_comparison(card)}\n\n{table}" if table else _comparison(card)


def _metric_names(metrics: Mapping[str, float]) -> list[str]:
    own = {name for name in metrics if not name.startswith(_CHAMPION_PREFIX)}
    return [name for name in KEY_METRICS if name in own] + sorted(own - set(KEY_METRICS))


def _metrics_table(card: ModelCard, *, keep: int | None = None) -> str:
    """The metrics table; with ``keep``, its first ``keep`` rows and a row counting the rest."""
    metrics = card.run.metrics
    names = _metric_names(metrics)
    if not names:
        return ""
    if keep is not None and len(names) > keep:
        more = f"| … | {len(names) - keep:,} more metrics on the MLflow run |"
        return _metrics_table(replace(card, run=_only(card.run, names[:keep]))) + f"\n{more}"
    version = _version(card)
    if not _has_champion_metrics(card):
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
    return _cell(name + suffix)


def _verdict(name: str, delta: float) -> str:
    """Arrow for the direction of the change, ✓/✗ for whether that is better for this metric."""
    if round(delta, 4) == 0:
        return "= same"
    improved = (delta < 0) if name in LOWER_IS_BETTER else (delta > 0)
    arrow = "↑" if delta > 0 else "↓"
    return f"{arrow} ✓ better" if improved else f"{arrow} ✗ worse"


def _profile(profile: DataProfile) -> str:
    names = sorted(profile.features)
    rows = [
        f"| {_cell(name)} | {profile.features[name].kind} | {_feature_summary(profile, name)} |"
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
    top = ", ".join(f"{_cell(category)} {count / total:.0%}" for category, count in ranked[:3])
    count = len(feature.frequencies)
    noun = "category" if count == 1 else "categories"
    return f"{count} {noun}: {top}" if top else f"{count} {noun}"


def _rollout(card: ModelCard) -> str:
    if card.previous_version is None:
        return fill_template(_FIRST_DEPLOY, {"environment": card.environment})
    steps = " → ".join(f"{step}%" for step in card.canary_steps) or "100%"
    gates = ", ".join(f"`{gate}`" for gate in card.gates) or "none configured"
    values: dict[str, object] = {
        "environment": card.environment,
        "version": _version(card),
        "previous": card.previous_version,
        "steps": steps,
        "gates": gates,
    }
    if card.smoke_requests is not None:
        return fill_template(_SMOKE_FIRST, {**values, "requests": card.smoke_requests})
    return fill_template(_CANARY, values)


# -- Markdown ----------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text safe inside a table cell: pipes escaped, on one line."""
    return _one_line(text).replace("|", "\\|")


def _fenced(language: str, text: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def _is_web_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _link_target(url: str) -> str:
    """A URL that cannot end a Markdown link early, with any credentials in it masked."""
    return redact(url).replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"
