"""What a challenger must show on mirrored traffic (``shadow:`` in an environment's
``rollout.yaml``), apart from the shadow judge (:mod:`controller.shadow.judge`) so that reading
a config does not load numpy: every command that reads an environment validates this model,
only the commands that judge a shadow need the statistics behind it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.predictions import DEFAULT_OUTCOME, OUTCOME_NAME_RULE, is_outcome_name
from controller.shadow.downstream_policy import DownstreamPolicy

__all__ = ["ShadowPolicy", "TaskMetric"]

TaskMetric = Literal["pr_auc", "recall_at_fpr"]


class ShadowPolicy(BaseModel):
    """What a challenger must show on mirrored traffic before it may take client traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    min_samples: int = Field(
        default=500,
        ge=1,
        alias="minSamples",
        description="Requests both models answered with a score before any check may pass.",
    )
    min_labelled: int = Field(
        default=200,
        ge=1,
        alias="minLabelled",
        description="Of those, requests whose label has arrived before the task metric and "
        "McNemar's test may pass.",
    )
    min_positives: int = Field(
        default=10,
        ge=1,
        alias="minPositives",
        description="Labelled requests of each class (positive and negative; with classes, "
        "each of them) the labelled checks need; rare fraud, or a rare regime, makes this "
        "bind before minLabelled does.",
    )
    classes: tuple[str, ...] | None = Field(
        default=None,
        min_length=2,
        description="Judge a classifier: the class names its answers decide among and its "
        "labels are (e.g. [calm, volatile, black_swan]). Set, the judge checks errors, "
        "agreement of the decisions, latency, macro-F1 (paired bootstrap, "
        "nonInferiorityMargin), each class's recall and McNemar; the score shift, threshold "
        "and taskMetric do not apply. Unset, the judge is binary.",
    )
    outcome: str = Field(
        default=DEFAULT_OUTCOME,
        alias="outcome",
        description="Which named outcome of a request is this judge's ground truth (sent "
        "with `sluice feedback`, a column of that name): label unless set. Models that share "
        "request ids each read their own, e.g. regime for a regime classifier and up for a "
        "direction specialist answering the same InferenceGraph requests.",
    )
    downstream: DownstreamPolicy | None = Field(
        default=None,
        description="With classes, for a classifier whose decisions route an InferenceGraph "
        "(the first step of its root Sequence): also judge the graph's answers when the "
        "challenger's decisions route them against when the champion's do, replayed through "
        "the graph's router and scored on a named outcome, over all requests and per class "
        "(shadow/downstream, shadow/downstream/CLASS). The local target's graph router "
        "replays; elsewhere the check errs.",
    )
    decision_field: str | None = Field(
        default=None,
        min_length=1,
        alias="decisionField",
        description="With classes: the field of an answer's row that holds the decided class "
        "(e.g. regime). An answer without it, or without decisionField, is read as the class "
        "of its largest p_<class> field.",
    )
    psi_bins: int = Field(
        default=10,
        ge=2,
        le=100,
        alias="psiBins",
        description="Quantile bins of the champion's scores over which PSI is computed.",
    )
    max_score_psi: float = Field(
        default=0.2,
        gt=0,
        alias="maxScorePsi",
        description="Largest population stability index of the challenger's scores against "
        "the champion's (0.1: minor shift, 0.25: major).",
    )
    max_score_ks: float = Field(
        default=0.1,
        gt=0,
        le=1,
        alias="maxScoreKs",
        description="Largest Kolmogorov-Smirnov statistic (greatest gap between the two "
        "score distributions' CDFs).",
    )
    threshold: float = Field(
        default=0.5,
        description="The serving threshold: a score at or above it is a positive decision.",
    )
    min_agreement: float = Field(
        default=0.95,
        ge=0,
        le=1,
        alias="minAgreement",
        description="Smallest share of requests both models decide alike at the threshold.",
    )
    max_latency_increase: float = Field(
        default=0.5,
        ge=0,
        alias="maxLatencyIncrease",
        description="Largest relative increase of the challenger's latency percentile over "
        "the champion's: 0.5 allows 50% slower.",
    )
    latency_percentile: float = Field(
        default=95,
        gt=0,
        lt=100,
        alias="latencyPercentile",
        description="The latency percentile compared.",
    )
    max_error_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        alias="maxErrorRate",
        description="Largest share of mirrored requests the challenger may fail to answer "
        "with a score (errors, timeouts, unreadable answers).",
    )
    task_metric: TaskMetric = Field(
        default="pr_auc",
        alias="taskMetric",
        description="The metric on labelled requests: pr_auc (average precision) or "
        "recall_at_fpr (recall at operatingFpr).",
    )
    operating_fpr: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        alias="operatingFpr",
        description="The false-positive rate at which recall_at_fpr is read.",
    )
    non_inferiority_margin: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        alias="nonInferiorityMargin",
        description="How much worse the challenger's task metric may be (absolute): it "
        "passes when the bootstrap lower bound of challenger - champion is above -margin.",
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="One-sided level of the bootstrap bound and of McNemar's harm test.",
    )
    bootstrap_resamples: int = Field(
        default=2000,
        ge=100,
        le=100_000,
        alias="bootstrapResamples",
        description="Paired bootstrap resamples of the labelled requests.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Seed of the bootstrap, so that a verdict can be reproduced exactly.",
    )

    @model_validator(mode="after")
    def _outcome_is_a_name(self) -> ShadowPolicy:
        if not is_outcome_name(self.outcome):
            raise ValueError(
                f"outcome {self.outcome!r} is not an outcome name ({OUTCOME_NAME_RULE}), "
                "e.g. label, regime or up"
            )
        return self

    @model_validator(mode="after")
    def _classes_are_names(self) -> ShadowPolicy:
        if self.classes is None and self.downstream is not None:
            raise ValueError(
                "downstream judges a classifier that routes a graph: set classes (the regimes "
                "its decisions route by), or remove downstream"
            )
        if self.classes is None:
            if self.decision_field is not None:
                raise ValueError(
                    "decisionField reads a classifier's decision: set classes too, e.g. "
                    "classes: [calm, volatile, black_swan]"
                )
            return self
        blank = [name for name in self.classes if not name.strip()]
        if blank or len(set(self.classes)) != len(self.classes):
            raise ValueError(
                f"classes {list(self.classes)} must be distinct, non-empty names, "
                "e.g. [calm, volatile, black_swan]"
            )
        return self
