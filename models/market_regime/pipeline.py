"""The market-regime models: how each kind is fitted, fed and scored.

Four kinds, each its own registered model: the regime ``classifier`` (boosted trees over the
market features), two specialists that predict the next period's direction, each fitted on its
own regime's rows only (``calm``: in calm markets returns trend; ``volatile``: in volatile ones
they revert), and the ``blend``, a weighted ensemble of the two specialists whose weights
follow the classifier's probabilities (:func:`models.market_regime.served_model.blend_features`).

Kept apart from the training entry point so that a candidate and the champion are fed and
scored by the same functions on the same rows. Every fit is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from controller.errors import InputError
from models.market_regime.market import FEATURES, NEXT_UP, REGIME, REGIMES, WARM_UP_DAYS
from models.market_regime.regime_metrics import classifier_metrics, direction_metrics
from models.market_regime.served_model import (
    blend_features,
    gate_column,
    predict_frame,
    specialist_column,
)
from models.openmp_threads import one_openmp_thread

__all__ = [
    "CLASSIFIER_HYPERPARAMETERS",
    "HOLDOUT_SHARE",
    "KINDS",
    "SPECIALISTS",
    "Members",
    "blend_training_inputs",
    "fit",
    "fit_blend",
    "fit_members",
    "model_config",
    "model_inputs",
    "predict",
    "score",
    "split_holdout",
]

KINDS = ("classifier", "calm", "volatile", "blend")
#: The specialists, each named after the regime whose rows it is fitted on.
SPECIALISTS = ("calm", "volatile")
HOLDOUT_SHARE = 0.25
#: Rows dropped between the training rows and the holdout (and around each block the blend's
#: members are cross-fitted without): a row's features look back this far, so no holdout
#: feature window overlaps a training row.
EMBARGO_ROWS = WARM_UP_DAYS
#: Fewest rows of every regime the training rows and the holdout must each hold.
MIN_REGIME_ROWS = 20
CLASSIFIER_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_leaf_nodes": 15,
}
#: Sample weight per regime for the classifier: black swans are rare but must be recalled.
CLASS_WEIGHTS = {"calm": 1.0, "volatile": 1.5, "black_swan": 6.0}
#: Contiguous blocks the blend's members are cross-fitted over (:func:`blend_training_inputs`).
CROSS_FIT_BLOCKS = 3
#: The regime a ``--worse-in`` classifier mistakes a regime for.
_CONFUSED_WITH = {"calm": "volatile", "volatile": "calm", "black_swan": "volatile"}


@dataclass(frozen=True)
class Members:
    """The models the blend combines, fitted on the same rows."""

    classifier: Any
    specialists: dict[str, Any]


def split_holdout(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-ordered split: the last :data:`HOLDOUT_SHARE` of the rows is the holdout, the rows
    before it (less :data:`EMBARGO_ROWS`) train. Each part must hold every regime."""
    start = len(frame) - int(len(frame) * HOLDOUT_SHARE)
    train = frame.iloc[: max(start - EMBARGO_ROWS, 0)].reset_index(drop=True)
    holdout = frame.iloc[start:].reset_index(drop=True)
    for part, rows in (("training rows hold", train), ("holdout holds", holdout)):
        counts = rows[REGIME].value_counts()
        short = [r for r in REGIMES if counts.get(r, 0) < MIN_REGIME_ROWS]
        if short:
            raise InputError(
                f"the {part} fewer than {MIN_REGIME_ROWS} rows of {', '.join(short)} "
                f"({len(frame)} rows in all); raise --rows or try another --seed"
            )
    return train, holdout


def model_config(kind: str) -> dict[str, Any]:
    """The ``model_config`` a version of ``kind`` is logged with (read by the served model)."""
    served = "specialist" if kind in SPECIALISTS else kind
    return {"kind": served, "regimes": list(REGIMES), "specialists": list(SPECIALISTS)}


def predict(kind: str, estimator: Any, inputs: pd.DataFrame) -> pd.DataFrame:
    """What a version of ``kind`` serves for ``inputs``: the served model's own code."""
    with one_openmp_thread():
        result: pd.DataFrame = predict_frame(
            model_config(kind)["kind"], estimator, inputs, model_config(kind)
        )
    return result


def _worse_in_target(kind: str, rows: pd.DataFrame, worse_in: str | None) -> pd.Series:
    """The target ``kind`` is fitted to, corrupted on ``worse_in``'s rows when it is given:
    directions flipped, or (classifier) the regime taken for its neighbour."""
    if kind == "classifier":
        target = rows[REGIME].copy()
        if worse_in is not None:
            target[rows[REGIME] == worse_in] = _CONFUSED_WITH[worse_in]
        return target
    target = rows[NEXT_UP].copy()
    if worse_in is not None:
        target[rows[REGIME] == worse_in] = 1 - target[rows[REGIME] == worse_in]
    return target


def _fit_classifier(rows: pd.DataFrame, seed: int, worse_in: str | None = None) -> Any:
    weights = rows[REGIME].map(CLASS_WEIGHTS).to_numpy(dtype=np.float64)
    trees = HistGradientBoostingClassifier(random_state=seed, **CLASSIFIER_HYPERPARAMETERS)
    with one_openmp_thread():
        return trees.fit(
            rows[FEATURES], _worse_in_target("classifier", rows, worse_in), sample_weight=weights
        )


def _fit_specialist(rows: pd.DataFrame, specialist: str, worse_in: str | None = None) -> Any:
    own = rows[rows[REGIME] == specialist]
    model = Pipeline([("scale", StandardScaler()), ("direction", LogisticRegression())])
    return model.fit(own[FEATURES], _worse_in_target(specialist, own, worse_in))


def fit_members(rows: pd.DataFrame, seed: int) -> Members:
    """The classifier and both specialists, as ``--model classifier|calm|volatile`` fits them."""
    return Members(
        classifier=_fit_classifier(rows, seed),
        specialists={name: _fit_specialist(rows, name) for name in SPECIALISTS},
    )


def model_inputs(kind: str, frame: pd.DataFrame, members: Members | None = None) -> pd.DataFrame:
    """The request rows a version of ``kind`` is sent: the market features, or for the blend
    the classifier's probabilities and the specialists' ``p_up`` on those rows."""
    features = frame[FEATURES].reset_index(drop=True)
    if kind != "blend":
        return features
    if members is None:
        raise ValueError("the blend's inputs need the members' predictions")
    regimes = predict("classifier", members.classifier, features)
    inputs = pd.DataFrame(
        {gate_column(regime): regimes[f"p_{regime}"].to_numpy() for regime in REGIMES}
    )
    for name, specialist in members.specialists.items():
        inputs[specialist_column(name)] = predict(name, specialist, features)["p_up"].to_numpy()
    return inputs


def blend_training_inputs(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The blend's inputs on its training ``rows``, each block's from members fitted without it
    (nor the embargo around it), over :data:`CROSS_FIT_BLOCKS` contiguous blocks: what the
    members answer on rows they never saw. Answers on their own training rows would be more
    confident than any they give in service, and the blend would learn to trust them."""
    blocks = np.array_split(np.arange(len(rows)), CROSS_FIT_BLOCKS)
    parts = []
    for block in blocks:
        keep = np.ones(len(rows), dtype=bool)
        keep[max(block[0] - EMBARGO_ROWS, 0) : block[-1] + EMBARGO_ROWS + 1] = False
        members = fit_members(rows[keep], seed)
        parts.append(model_inputs("blend", rows.iloc[block], members))
    return pd.concat(parts, ignore_index=True)


def fit_blend(inputs: pd.DataFrame, rows: pd.DataFrame, worse_in: str | None = None) -> Any:
    """The blend over its training ``inputs`` (:func:`blend_training_inputs` of ``rows``)."""
    design = blend_features(inputs, list(REGIMES), list(SPECIALISTS))
    target = _worse_in_target("blend", rows, worse_in).to_numpy()
    # The design's columns are gates and gated log-odds: its intercepts, one per regime.
    return LogisticRegression(fit_intercept=False).fit(design, target)


def fit(kind: str, rows: pd.DataFrame, seed: int, *, worse_in: str | None = None) -> Any:
    """Fit a model of ``kind`` on the training ``rows``.

    ``worse_in``: a deliberately worse candidate in that regime only, its target corrupted
    on that regime's rows (see :func:`_worse_in_target`). A specialist is fitted on its own
    regime's rows alone, so for one ``worse_in`` must be that regime.

    The blend is fitted on the members' answers on rows they did not train on
    (:func:`blend_training_inputs`).
    """
    if worse_in is not None and worse_in not in REGIMES:
        raise InputError(f"--worse-in {worse_in!r} is not a regime: {', '.join(REGIMES)}")
    if kind == "classifier":
        return _fit_classifier(rows, seed, worse_in)
    if kind in SPECIALISTS:
        if worse_in not in (None, kind):
            raise InputError(
                f"the {kind} specialist is fitted on {kind} rows only, so it can be made "
                f"worse in {kind} alone: --worse-in {kind}"
            )
        return _fit_specialist(rows, kind, worse_in)
    if kind == "blend":
        return fit_blend(blend_training_inputs(rows, seed), rows, worse_in)
    raise InputError(f"unknown model {kind!r}: {', '.join(KINDS)}")


def score(kind: str, outputs: pd.DataFrame, holdout: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-scope holdout metrics of ``kind``'s answers ``outputs`` on the ``holdout`` rows."""
    if kind == "classifier":
        return classifier_metrics(outputs["regime"], holdout[REGIME])
    return direction_metrics(outputs["p_up"], holdout[NEXT_UP], holdout[REGIME])
