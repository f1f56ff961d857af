"""The rollout policy: steps, pacing and limits, typed and kept in Git beside the manifests.

It is the ``rollout:`` block of an environment's ``sluice.yaml``, so a change to how
carefully a model reaches production is reviewed like the manifests it governs; a release may
override part of it (``releases[].rollout``, merged over it by :func:`merge_policy`). The JSON
schema printed by ``sluice config schema environment`` documents every field.

Defaults favour a fast, safe rollback (see ``benchmarks/rollback_latency.py``): one failing
analysis rolls back, because a gate only fails on evidence (a threshold crossed with enough
requests, or a statistically significant difference); missing data is inconclusive and only
aborts after ``inconclusiveLimit`` analyses in a row, and a gate whose tool did not work
(``error``) after ``errorLimit``. An aborted rollout moves traffic back exactly as a rollback
does, but only a failed one quarantines the version: a broken tool never condemns a model.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.gates.sequential_watch import WatchConfig
from controller.gates.smoke import SmokeConfig
from controller.rollout.gates_config import GatesConfig
from controller.shadow.policy import ShadowPolicy

__all__ = [
    "RolloutPolicy",
    "ShadowPhase",
    "deep_merge",
    "merge_policy",
    "needs_prediction_log",
    "next_step",
]


class ShadowPhase(BaseModel):
    """The optional shadow phase before the first canary step.

    The challenger's revision is created at 0 % (``canaryTrafficPercent: 0``) and receives a
    mirrored copy of the primary's live requests; clients only ever get the primary's answers.
    Every ``interval`` the shadow judge compares the two models' answers on the same requests;
    only a PASS lets the first canary step begin, a FAIL rolls back (the challenger never took
    client traffic), and a challenger without a verdict after ``maxDuration`` is rolled back
    too: too few samples never pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mirror_percent: float = Field(
        default=100.0,
        alias="mirrorPercent",
        gt=0,
        le=100,
        description="Share of the primary's requests copied to the challenger (Istio's "
        "mirrorPercentage).",
    )
    max_duration_seconds: float = Field(
        default=3600.0,
        alias="maxDuration",
        gt=0,
        description="Seconds the shadow phase may last without a verdict before the challenger "
        "is rolled back (labels arrive late: leave room for them).",
    )
    judge: ShadowPolicy = Field(
        default_factory=ShadowPolicy,
        description="What the challenger must show on the mirrored traffic.",
    )


class RolloutPolicy(BaseModel):
    """How a new version takes traffic once its proposal merges."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    steps: tuple[int, ...] = Field(
        default=(10, 50, 100),
        description="canaryTrafficPercent steps, ascending, ending at 100 (100 = promote).",
    )
    interval_seconds: float = Field(
        default=30.0,
        alias="interval",
        gt=0,
        description="Seconds between analyses of a step; the first one comes this long after "
        "the step is served.",
    )
    failure_limit: int = Field(
        default=1,
        alias="failureLimit",
        ge=1,
        description="Failed analyses at one step before rolling back.",
    )
    inconclusive_limit: int = Field(
        default=5,
        alias="inconclusiveLimit",
        ge=1,
        description="Analyses in a row without an answer (no data, too few samples, an "
        "undecided judge) before the rollout is aborted: traffic goes back to the previous "
        "version, which is not quarantined.",
    )
    error_limit: int = Field(
        default=4,
        alias="errorLimit",
        ge=1,
        description="Analyses in a row where a gate's tool did not work (Locust crashed or "
        "could not start, a Prometheus query errored, Prometheus was unreachable) before the "
        "rollout is aborted: traffic goes back, the version is not quarantined and may be "
        "proposed again (Argo Rollouts' consecutiveErrorLimit defaults to 4 too).",
    )
    progress_deadline_seconds: float = Field(
        default=600.0,
        alias="progressDeadline",
        gt=0,
        description="Seconds a step may wait for the target to sync and the canary revision "
        "to become ready before rolling back (Knative's default is 600).",
    )
    gates: GatesConfig = Field(
        default_factory=GatesConfig, description="What each analysis checks."
    )
    watch: WatchConfig = Field(
        default_factory=WatchConfig,
        description="Between analyses, an SPRT on the canary's own error rate every period "
        "(Wald: H0 p <= the primary's rate + gates.judge.errorMargin, H1 p >= that + "
        "minDetectableErrorRate; alpha = beta = 0.01): conclusive evidence rolls back and "
        "quarantines at once; it never promotes, and a query that errors is ignored.",
    )
    smoke: SmokeConfig = Field(
        default_factory=SmokeConfig,
        description="A pre-traffic smoke: the new version is pinned at weight 0 (sluice.dev/"
        "phase: smoke) and, once ready, must answer the load test's payloads on its tag route "
        "before the first step takes client traffic. On by default; enabled: false starts the "
        "canary at the first step in the proposal's own commit.",
    )
    shadow: ShadowPhase | None = Field(
        default=None,
        description="A shadow phase before the first canary step (off when absent): the "
        "challenger answers mirrored traffic and must pass the shadow judge first.",
    )

    @field_validator("steps")
    @classmethod
    def _steps_ascend_to_100(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or value[-1] != 100:
            raise ValueError("steps must end at 100")
        if any(not 0 < step <= 100 for step in value) or list(value) != sorted(set(value)):
            raise ValueError("steps must be strictly ascending percentages in 1..100")
        return value


def needs_prediction_log(policy: RolloutPolicy) -> bool:
    """Whether the policy judges the model on its answers, so that a cluster must send them to
    ``sluice serve``'s prediction log (KServe's inference logger, written by ``sluice
    propose``): a shadow phase compares the two models' answers, and KPI checks
    (``gates.kpis``) join outcomes to the answers of each revision."""
    return policy.shadow is not None or bool(policy.gates.kpis)


def next_step(steps: tuple[int, ...], current: int) -> int:
    """The step after ``current``: the first one above it (100 when none is)."""
    return next((step for step in steps if step > current), 100)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key; anything else (a list, a scalar,
    null) replaces what ``base`` had, so ``shadow: null`` removes a shadow phase."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def merge_policy(base: Mapping[str, Any], override: Mapping[str, Any]) -> RolloutPolicy:
    """A release's policy: its partial ``override`` deep-merged over the environment's
    ``base`` (both as the file writes them), then validated whole; a bad result raises
    pydantic's ``ValidationError``, located in the merged policy.

    Keys are merged under their aliases (``interval``, ``gates.loadTest``), so a release
    writing ``interval`` replaces an environment's ``interval_seconds``."""
    merged = deep_merge(_aliased(RolloutPolicy, base), _aliased(RolloutPolicy, override))
    return RolloutPolicy.model_validate(merged)


def _aliased(model: type[BaseModel], data: Any) -> Any:
    """``data`` with each key of ``model``'s fields (and its nested models') under its alias."""
    if not isinstance(data, Mapping):
        return data
    keys: dict[str, tuple[str, type[BaseModel] | None]] = {}
    for name, field in model.model_fields.items():
        keys[name] = keys[field.alias or name] = (field.alias or name, _model_in(field.annotation))
    aliased: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in keys:
            aliased[key] = value  # refused by validation (extra="forbid"), as written
            continue
        alias, nested = keys[key]
        aliased[alias] = _aliased(nested, value) if nested is not None else value
    return aliased


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model a field's type holds as a mapping (``ShadowPhase | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is not typing.Union and origin is not types.UnionType:
        return None  # a tuple of models is a list in the file: lists replace, whole
    models = {m for m in map(_model_in, typing.get_args(annotation)) if m is not None}
    return models.pop() if len(models) == 1 else None
