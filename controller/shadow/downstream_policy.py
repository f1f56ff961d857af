"""``rollout.shadow.judge.downstream``: how a challenger classifier that routes an
InferenceGraph is judged by the graph's answers (:mod:`controller.shadow.downstream`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.predictions import OUTCOME_NAME_RULE, is_outcome_name

__all__ = ["DownstreamPolicy"]


class DownstreamPolicy(BaseModel):
    """``rollout.shadow.judge.downstream``: judge a challenger classifier by the graph's
    answers when its decisions route them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    graph: str = Field(
        min_length=1,
        description="The InferenceGraph (in this environment) whose root Sequence starts "
        "with this release's InferenceService; its router replays each mirrored request "
        "with the champion's and with the challenger's answer.",
    )
    outcome: str = Field(
        min_length=1,
        description="The named outcome the graph's answers are scored on, 0 or 1 per request "
        "(e.g. up: the next day's return rose), sent with `sluice feedback` as a column of "
        "that name.",
    )
    score_field: str | None = Field(
        default=None,
        min_length=1,
        alias="scoreField",
        description="The field of the graph answer's row holding the score (e.g. p_up); "
        "unset: the answer's only number, as the binary shadow judge reads scores.",
    )
    threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A score at or above it predicts outcome 1: the task metric is the "
        "share of requests predicted right (directional accuracy).",
    )
    non_inferiority_margin: float = Field(
        default=0.02,
        ge=0,
        le=1,
        alias="nonInferiorityMargin",
        description="How much lower the challenger-routed accuracy may be, over all requests "
        "and in each regime.",
    )
    max_requests: int = Field(
        default=2000,
        ge=10,
        le=100_000,
        alias="maxRequests",
        description="Replay at most this many of the newest requests with the outcome each "
        "analysis (two graph calls each).",
    )

    @field_validator("outcome")
    @classmethod
    def _outcome_is_a_name(cls, value: str) -> str:
        if not is_outcome_name(value):
            raise ValueError(f"{value!r} is not an outcome name ({OUTCOME_NAME_RULE}), e.g. up")
        return value
