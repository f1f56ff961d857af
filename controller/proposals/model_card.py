"""The model card: the pull request body a reviewer reads before merging a model version.

A reviewer decides in a minute whether a version may reach an environment, so the card puts
the evidence first: the holdout metrics against the champion scored on the same rows (with
which direction is better for each), the quality gate's verdict, what the model was trained on,
the manifest diff, and what merging will set in motion. It is rendered from templates strictly:
a variable without a value, or a value without a variable, is an error rather than a card with
a hole in it. The output is deterministic, so an unchanged proposal leaves the pull request
body unchanged and the forge does not write it again.

A card never exceeds GitHub's 65,536-character body limit (:mod:`controller.text.forge_limits`).
A card over it loses, in this order until it fits: the end of the manifest diff (the whole
change is on the pull request's Files changed tab), then the diff and the training-data
profile altogether with the metrics table cut to its first rows, then the metrics table. A
trimmed card says so under its links, with a link to the MLflow run for the full content; the
headline, the comparison line, the gate's verdict and the hidden marker always stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template

from controller.domain import ModelVersion, RunSummary
from controller.proposals.model_card_sections import (
    KEY_METRICS,
    comparison_line,
    metrics_section,
    profile_section,
)
from controller.quality.data_profile import DataProfile
from controller.redact import redact
from controller.text.forge_limits import BODY_LIMIT, fit_body, trimmed_note
from controller.text.markdown_text import fenced_block, is_web_url, link_target, one_line
from controller.text.strict_template import fill_template

__all__ = [
    "CARD_MARKER",
    "KEY_METRICS",
    "ModelCard",
    "fill_template",
    "render_model_card",
]

#: The hidden comment that ends every card, so tools can find cards (``sluice:model-card``).
CARD_MARKER = Template("<!-- sluice:model-card model=$model env=$environment version=$version -->")
#: Metric rows a trimmed card keeps (the key metrics come first).
MAX_TRIMMED_METRICS = 12
#: A diff excerpt shorter than this is not worth showing: the card drops the diff instead.
_MIN_DIFF_EXCERPT = 1_000
_FILES_CHANGED = "this pull request's Files changed tab"

_CARD = Template(
    """## $model v$version → $environment

$links$notice$evidence

### Holdout metrics

$metrics

- **Quality gate:** $gate
- **Trained on:** $data$provenance
$profile
### Manifest change

$diff_block

### What happens on merge

$rollout

$marker
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
    #: The proposal's provenance check, in words (verified, failed under warn, not checked);
    #: None leaves the provenance line out when the version recorded no provenance either.
    provenance: str | None = None
    #: The Evidence section's Markdown (:func:`~controller.proposals.model_card_evidence.
    #: evidence_section`) for an environment with ``promotion:``; None leaves it out.
    evidence: str | None = None


def render_model_card(card: ModelCard, *, limit: int = BODY_LIMIT) -> str:
    """The card as GitHub Markdown, ending with the hidden ``sluice:model-card`` marker, at
    most ``limit`` characters (trimmed as the module docstring says)."""
    profile = profile_section(card.profile) if card.profile is not None else ""
    full = _render(card, fenced_block("diff", card.diff), profile, metrics_section(card), notice="")
    if len(full) <= limit:
        return full
    run = _run_reference(card)
    # 1. The end of the diff: the rest of the card as it is, the diff cut to the room left.
    notice = trimmed_note(
        "the manifest diff is cut", f"The full change is on {_FILES_CHANGED}; the run: {run}."
    )
    rest = _render(card, "", profile, metrics_section(card), notice=notice)
    excerpt = _diff_excerpt(card.diff, limit - len(rest))
    if excerpt is not None:
        return _render(card, excerpt, profile, metrics_section(card), notice=notice)
    # 2. No diff or profile, the first metric rows; 3. no metrics table either.
    lines = len(card.diff.splitlines())
    no_diff = f"*The diff ({lines:,} lines) is too long for this card: see {_FILES_CHANGED}.*"
    left_out = "the manifest diff and the training-data profile are left out"
    cut: str | None = None
    for metrics, what in (
        (
            metrics_section(card, keep=MAX_TRIMMED_METRICS),
            f"{left_out}, and the metrics table is cut",
        ),
        (comparison_line(card), f"{left_out}, and so is the metrics table"),
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
            "evidence": f"\n\n### Evidence\n\n{card.evidence}" if card.evidence else "",
            "metrics": metrics,
            "gate": one_line(card.version.tags.get("sluice.gate_summary", "not recorded")),
            "data": _training_data(card.run.params),
            "provenance": _provenance(card),
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
    fence_overhead = len(fenced_block("diff", diff)) - len(diff.rstrip("\n"))
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
    block = fenced_block("diff", "\n".join(lines[:kept])) + _more_lines(len(lines) - kept)
    return block if len(block) <= room else None


def _more_lines(count: int) -> str:
    return f"\n\n*… {count:,} more lines of the diff are on {_FILES_CHANGED}.*"


# -- sections ----------------------------------------------------------------------------------


def _version(card: ModelCard) -> int:
    return card.version.version


def _links(card: ModelCard) -> str:
    run = _run_reference(card) if is_web_url(card.run.url) else "No MLflow run recorded"
    registry = (
        f"[registry: {card.model} v{_version(card)}]({link_target(card.registry_url)})"
        if is_web_url(card.registry_url)
        else f"registry: {card.model} v{_version(card)}"
    )
    return f"{run} · {registry} · artifacts `{redact(card.storage_uri)}`"


def _run_reference(card: ModelCard) -> str:
    """The MLflow run as a link (its id when the registry gave no web URL)."""
    run_id = card.run.run_id
    if is_web_url(card.run.url):
        return f"[MLflow run `{run_id[:12]}`]({link_target(card.run.url)})"
    return f"MLflow run `{run_id}`"


def _training_data(params: Mapping[str, str]) -> str:
    data = one_line(params.get("data", "not recorded"))
    if "holdout_rows" not in params:
        return data
    rows = params["holdout_rows"]
    holdout = f"{int(rows):,}" if rows.isdigit() else rows
    digest = params.get("holdout_digest")
    return f"{data} · holdout {holdout} rows" + (f", digest `{digest}`" if digest else "")


#: The chain a version's provenance tags record, as the card names each link.
_CHAIN = (
    ("attestation", "sluice.provenance"),
    ("training commit", "sluice.training_commit"),
    ("datasets", "sluice.dataset_digest"),
)


def _provenance(card: ModelCard) -> str:
    """The provenance line and its chain (attestation, training commit, datasets), or nothing
    for a version with neither a recorded attestation nor a check."""
    tags = card.version.tags
    links = [f"  - {name}: `{one_line(tags[tag])}`" for name, tag in _CHAIN if tag in tags]
    if card.provenance is None and not links:
        return ""
    result = one_line(card.provenance) if card.provenance is not None else "not checked"
    return "\n- **Provenance:** " + result + "".join(f"\n{link}" for link in links)


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
