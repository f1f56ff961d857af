"""The market-regime example: its synthetic market, its models, their per-regime gates and the
JSON a router switches on. Everything but the last test runs without MLflow's server; the last
one trains and registers the classifier as CI would, and serves it from the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.gitops_repo import ROOT

from controller.errors import ConfigError, InputError
from controller.local.serving.pyfunc_model import PyfuncServable
from controller.quality.quality_gate import GateVerdict
from models.market_regime.market import (
    FEATURES,
    NEXT_RETURN,
    NEXT_UP,
    REGIME,
    REGIMES,
    feature_rows,
    generate_market,
    market_frame,
)
from models.market_regime.pipeline import (
    Members,
    blend_training_inputs,
    fit,
    fit_blend,
    fit_members,
    model_config,
    model_inputs,
    predict,
    score,
    split_holdout,
)
from models.market_regime.regime_gate import (
    RegimeGates,
    evaluate_regime_gate,
    load_regime_gates,
)
from models.market_regime.train import DEFAULT_GATE, prepare

SEED = 7
ROWS = 20_000  # the training step's default: about 100 black-swan rows in the holdout
GATES = load_regime_gates(DEFAULT_GATE)
Metrics = dict[str, dict[str, float]]


# -- the market --------------------------------------------------------------------------


def _spells(regime: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each spell's regime and length."""
    starts = np.r_[0, np.flatnonzero(np.diff(regime)) + 1]
    return regime[starts], np.diff(np.r_[starts, len(regime)])


def _lagged_correlation(values: np.ndarray, regime: np.ndarray, which: int, lag: int) -> float:
    """Correlation of ``values`` with themselves ``lag`` days earlier, over pairs of days both
    in regime ``which`` (so a change of regime level is not mistaken for clustering)."""
    both = (regime[lag:] == which) & (regime[:-lag] == which)
    return float(np.corrcoef(values[lag:][both], values[:-lag][both])[0, 1])


def test_the_market_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same series and rows; another seed another series."""
    first, again = generate_market(3_000, seed=SEED), generate_market(3_000, seed=SEED)
    for name in ("regime", "log_return", "close", "volume"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.log_return, generate_market(3_000, seed=SEED + 1).log_return)
    pd.testing.assert_frame_equal(market_frame(500, seed=SEED), market_frame(500, seed=SEED))


def test_regimes_black_swans_are_rare_short_and_violent() -> None:
    """Calm is the usual state; black swans are about 2 % of days in spells of a few days,
    and a day's move grows from calm to volatile to black swan."""
    market = generate_market(ROWS, seed=SEED)
    share = np.bincount(market.regime, minlength=3) / len(market)
    assert share[0] > 0.6
    assert 0.1 < share[1] < 0.4
    assert 0.005 < share[2] < 0.04
    kinds, lengths = _spells(market.regime)
    assert lengths[kinds == 2].mean() < 8 < lengths[kinds == 0].mean()
    spread = [market.log_return[market.regime == k].std() for k in range(3)]
    assert spread[1] > 1.8 * spread[0]
    assert spread[2] > 2.5 * spread[1]
    black_swan_days = market.log_return[market.regime == 2]
    assert black_swan_days.mean() < -0.01  # they fall
    assert (np.log(market.volume[market.regime == 2]).mean()) > np.log(market.volume).mean()


def test_volatility_clusters_within_a_regime() -> None:
    """Big moves follow big moves inside one volatile spell (GARCH), five days on: with a
    constant volatility, its mean reversion alone would leave almost no such correlation."""
    market = generate_market(ROWS, seed=SEED)
    squared = market.log_return**2
    assert _lagged_correlation(squared, market.regime, which=1, lag=1) > 0.1
    assert _lagged_correlation(squared, market.regime, which=1, lag=5) > 0.05
    # ...and what the specialists live on: calm markets trend, volatile ones revert.
    returns = market.log_return
    assert _lagged_correlation(returns, market.regime, which=0, lag=1) > 0.1
    assert _lagged_correlation(returns, market.regime, which=1, lag=1) < -0.1


def test_twenty_thousand_rows_take_well_under_a_second() -> None:
    """Simulating and featurising 20,000 rows is vectorised but for the GARCH recursion."""
    market_frame(1_000, seed=SEED)  # imports and first-use costs are not the generator's
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        market_frame(ROWS, seed=SEED)
        best = min(best, time.perf_counter() - start)
    assert best < 0.5, f"{best:.3f} s"


def test_feature_rows_hold_what_is_known_at_the_close_and_the_next_day() -> None:
    """One row per day with a full history: features without gaps, the day's regime, the
    next day's return and direction, and no feature that looks past its day."""
    market = generate_market(1_000, seed=SEED)
    rows = feature_rows(market)
    assert list(rows.columns) == ["day", *FEATURES, REGIME, NEXT_RETURN, NEXT_UP]
    assert len(rows) == len(market) - 120
    assert not rows.isna().any().any()
    assert np.array_equal(rows[NEXT_RETURN], market.log_return[rows["day"] + 1])
    assert set(rows[REGIME]) <= set(REGIMES)
    assert (rows[[c for c in FEATURES if c.startswith("realised_vol")]] >= 0).all().all()
    assert (rows["drawdown_120d"] <= 0).all()
    assert len(market_frame(700, seed=SEED)) == 700

    # Rewrite the future after day 600: no row up to day 600 may change but its target.
    cut = 600
    future = market.log_return.copy()
    future[cut + 1 :] *= -3.0
    changed = replace(
        market,
        log_return=future,
        close=100.0 * np.exp(np.cumsum(future)),
        volume=np.r_[market.volume[: cut + 1], market.volume[cut + 1 :] * 5.0],
    )
    before = rows[rows["day"] <= cut][FEATURES]
    after = feature_rows(changed)
    pd.testing.assert_frame_equal(before, after[after["day"] <= cut][FEATURES])


# -- the models --------------------------------------------------------------------------


@dataclass
class Trained:
    """The four kinds fitted on one market's training rows and scored on its holdout."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    members: Members
    blend_inputs: pd.DataFrame  # the blend's cross-fitted training inputs
    blend: Any
    metrics: dict[str, Metrics]


@pytest.fixture(scope="module")
def trained() -> Trained:
    train, holdout = split_holdout(market_frame(ROWS, seed=SEED))
    members = fit_members(train, SEED)
    blend_inputs = blend_training_inputs(train, SEED)
    blend = fit_blend(blend_inputs, train)
    estimators = {"classifier": members.classifier, **members.specialists, "blend": blend}
    metrics = {
        kind: _holdout_metrics(kind, estimator, holdout, members)
        for kind, estimator in estimators.items()
    }
    return Trained(train, holdout, members, blend_inputs, blend, metrics)


def _holdout_metrics(kind: str, estimator: Any, holdout: pd.DataFrame, members: Members) -> Metrics:
    return score(kind, predict(kind, estimator, model_inputs(kind, holdout, members)), holdout)


def _verdict(kind: str, metrics: Metrics) -> GateVerdict:
    return evaluate_regime_gate(metrics, None, GATES.of(kind))


def _failed_scopes(verdict: GateVerdict) -> set[str]:
    return {check.metric.split("/")[0] for check in verdict.failures}


def test_the_holdout_is_later_than_the_training_rows() -> None:
    """The split is in time, with a gap as long as the longest feature window."""
    frame = market_frame(8_000, seed=SEED)
    train, holdout = split_holdout(frame)
    assert len(holdout) == 2_000
    assert holdout["day"].min() - train["day"].max() > 120
    with pytest.raises(InputError, match="fewer than 20 rows of black_swan"):
        split_holdout(frame.head(1_200))


def test_the_classifier_separates_the_regimes_on_the_holdout(trained: Trained) -> None:
    """Macro F1 and every regime's recall, black swans included, clear the gate."""
    metrics = trained.metrics["classifier"]
    assert metrics["all"]["macro_f1"] > 0.8
    assert metrics["black_swan"]["recall"] > 0.7
    verdict = _verdict("classifier", metrics)
    assert verdict.passed, verdict.summary()
    assert {check.metric for check in verdict.checks} >= {
        "all/macro_f1", "calm/recall", "volatile/recall", "black_swan/recall",
    }  # fmt: skip


def test_each_specialist_is_good_in_its_regime_and_poor_outside(trained: Trained) -> None:
    """The trend model wins in calm markets and loses in volatile ones, the mean-reversion
    model the reverse; each gate judges its own regime only, and passes."""
    calm, volatile = trained.metrics["calm"], trained.metrics["volatile"]
    accuracy = "directional_accuracy"
    assert calm["calm"][accuracy] > 0.6 > 0.5 > calm["volatile"][accuracy]
    assert volatile["volatile"][accuracy] > 0.55 > 0.5 > volatile["calm"][accuracy]
    for kind in ("calm", "volatile"):
        verdict = _verdict(kind, trained.metrics[kind])
        assert verdict.passed, verdict.summary()
        assert {check.metric.split("/")[0] for check in verdict.checks} == {kind}


def test_the_blend_is_a_weighted_ensemble_set_by_the_probabilities(trained: Trained) -> None:
    """The blend's log-odds are linear in the regime probabilities: halfway between calm and
    volatile it answers halfway between its calm and its volatile answer (in log-odds), not
    one or the other as a switch would. It beats the volatile specialist on black swans
    and passes its gate."""
    row = {"calm_p_up": 0.7, "volatile_p_up": 0.35}
    probabilities = [
        {"classifier_p_calm": 1.0, "classifier_p_volatile": 0.0, "classifier_p_black_swan": 0.0},
        {"classifier_p_calm": 0.0, "classifier_p_volatile": 1.0, "classifier_p_black_swan": 0.0},
        {"classifier_p_calm": 0.5, "classifier_p_volatile": 0.5, "classifier_p_black_swan": 0.0},
    ]
    inputs = pd.DataFrame([{**p, **row} for p in probabilities])
    p_up = predict("blend", trained.blend, inputs)["p_up"].to_numpy()
    log_odds = np.log(p_up / (1 - p_up))
    assert log_odds[2] == pytest.approx((log_odds[0] + log_odds[1]) / 2)
    assert p_up[0] > 0.5 > p_up[1]  # each regime trusts its own specialist

    blend, volatile = trained.metrics["blend"], trained.metrics["volatile"]
    accuracy = "directional_accuracy"
    assert blend["black_swan"][accuracy] > volatile["black_swan"][accuracy] + 0.1
    verdict = _verdict("blend", blend)
    assert verdict.passed, verdict.summary()


def test_a_specialist_worse_in_its_regime_fails_there_and_only_there(trained: Trained) -> None:
    """--worse-in volatile: the volatile specialist turns trend-follower. Its gate fails, on
    volatile checks only; elsewhere it is no worse, and over all rows it even looks better
    (calm rows are the majority), which is why the gate judges per regime."""
    good = trained.metrics["volatile"]
    worse_model = fit("volatile", trained.train, SEED, worse_in="volatile")
    worse = _holdout_metrics("volatile", worse_model, trained.holdout, trained.members)
    accuracy = "directional_accuracy"
    assert worse["volatile"][accuracy] < good["volatile"][accuracy] - 0.1
    for scope in ("calm", "black_swan", "all"):
        assert worse[scope][accuracy] >= good[scope][accuracy]
    verdict = _verdict("volatile", worse)
    assert not verdict.passed
    assert _failed_scopes(verdict) == {"volatile"}
    with pytest.raises(InputError, match="--worse-in calm"):
        fit("calm", trained.train, SEED, worse_in="volatile")


def test_a_blend_worse_on_black_swans_fails_only_their_checks(trained: Trained) -> None:
    """The blend's gate judges it over all rows and on black swans; a blend fitted to the
    wrong direction on black swans fails the black-swan checks while the all-rows ones pass:
    a hundred rows of five thousand barely move the aggregate."""
    worse_model = fit_blend(trained.blend_inputs, trained.train, worse_in="black_swan")
    worse = _holdout_metrics("blend", worse_model, trained.holdout, trained.members)
    verdict = _verdict("blend", worse)
    assert not verdict.passed
    assert _failed_scopes(verdict) == {"black_swan"}
    assert any(c.metric.startswith("all/") and c.passed for c in verdict.checks)


def test_a_classifier_worse_in_a_regime_stops_recognising_it(trained: Trained) -> None:
    """--worse-in volatile: volatile rows are taken for calm ones; the volatile recall
    collapses, the black swans are still recognised."""
    worse_model = fit("classifier", trained.train, SEED, worse_in="volatile")
    worse = _holdout_metrics("classifier", worse_model, trained.holdout, trained.members)
    assert worse["volatile"]["recall"] < 0.1
    assert worse["black_swan"]["recall"] >= trained.metrics["classifier"]["black_swan"]["recall"]
    verdict = _verdict("classifier", worse)
    assert "volatile/recall" in {check.metric for check in verdict.failures}
    assert "black_swan/recall" not in {check.metric for check in verdict.failures}


def test_prepare_scores_the_candidate_it_would_register() -> None:
    """The training step's local half: the same rows, the same answers, for any seed."""
    frame = market_frame(8_000, seed=3)
    candidate = prepare("volatile", frame, 3, worse_in="volatile")
    assert list(candidate.inputs.columns) == FEATURES
    assert list(candidate.outputs.columns) == ["p_up"]
    assert candidate.metrics == prepare("volatile", frame, 3, worse_in="volatile").metrics
    profile = candidate.profile()
    assert set(profile["features"]) == set(FEATURES)
    assert profile["predictions"] is not None
    # One profile per regime too, of that regime's training rows, built the same way.
    by_regime = candidate.slice_profiles()
    assert by_regime["column"] == "regime"
    counts = candidate.train_rows["regime"].value_counts()
    assert {value: part["rows"] for value, part in by_regime["profiles"].items()} == {
        regime: counts[regime] for regime in ("black_swan", "calm", "volatile")
    }
    for part in by_regime["profiles"].values():
        assert set(part["features"]) == set(FEATURES)
        assert part["predictions"]["count"] == part["rows"]


def test_the_gate_file_judges_every_model_and_rejects_what_it_cannot_judge(
    tmp_path: Path,
) -> None:
    """Every model has checks; a scope that is no regime, or a regression bound on a
    lower-is-better metric, is a one-line configuration error."""
    for kind in ("classifier", "calm", "volatile", "blend"):
        assert GATES.of(kind).flat().minimum
    for text, message in (
        ("calm:\n  minimum:\n    directional_accuracy: {crash: 0.5}\n", "crash"),
        ("calm:\n  max_regression:\n    brier: {calm: 0.01}\n", "lower is better"),
        ("crash:\n  minimum: {}\n", "crash"),
    ):
        path = tmp_path / "gate.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_regime_gates(path)
    assert RegimeGates().of("blend").flat().minimum == {}


# -- served ------------------------------------------------------------------------------


def _save(model_dir: Path, kind: str, estimator: Any, inputs: pd.DataFrame) -> PyfuncServable:
    """Save a version as the training step logs it, and load it as Sluice's server does."""
    import mlflow.pyfunc

    from models.market_regime.registry_io import pyfunc_arguments

    arguments = pyfunc_arguments(
        model_dir.parent / f"{kind}-work",
        estimator=estimator,
        model_config=model_config(kind),
        input_example=inputs.head(3),
        output_example=predict(kind, estimator, inputs.head(3)),
    )
    mlflow.pyfunc.save_model(str(model_dir), **arguments)
    servable = PyfuncServable(str(model_dir))
    servable.load()
    return servable


def _v1(servable: PyfuncServable, instances: list[dict[str, Any]]) -> dict[str, Any]:
    """A V1 request through the server's own decoding and encoding, as JSON."""
    result = servable.predict(servable.frame_from_instances(instances))
    body: dict[str, Any] = json.loads(json.dumps({"predictions": servable.predictions(result)}))
    return body


def test_the_classifier_answers_with_the_regime_on_top_and_the_features(
    trained: Trained, tmp_path: Path
) -> None:
    """Each answer is one JSON object: ``regime`` (what a graph's Switch routes on), the
    per-regime probabilities, then the request's features, so the next step can take it as its
    request. The blend takes such probabilities with the specialists' ``p_up``."""
    holdout = trained.holdout
    volatile_rows = holdout[holdout[REGIME] == "volatile"][FEATURES]
    servable = _save(
        tmp_path / "classifier",
        "classifier",
        trained.members.classifier,
        model_inputs("classifier", holdout),
    )
    assert [name for name, _ in servable.columns] == FEATURES
    assert [t.name for t in servable.outputs][:4] == [
        "regime", "p_calm", "p_volatile", "p_black_swan",
    ]  # fmt: skip

    instances = json.loads(volatile_rows.head(50).to_json(orient="records"))
    answers = _v1(servable, instances)["predictions"]
    assert len(answers) == 50
    first = answers[0]
    assert list(first)[:4] == ["regime", "p_calm", "p_volatile", "p_black_swan"]
    assert {k: first[k] for k in FEATURES} == pytest.approx(instances[0])
    for answer in answers:
        assert answer["regime"] in REGIMES
        assert sum(answer[f"p_{r}"] for r in REGIMES) == pytest.approx(1.0)
        assert answer["regime"] == max(REGIMES, key=lambda r: answer[f"p_{r}"])
    # A Switch on [@this].#(regime=="volatile") sends most of these rows one way.
    assert sum(a["regime"] == "volatile" for a in answers) > 30

    blend_inputs = model_inputs("blend", holdout, trained.members)
    blend = _save(tmp_path / "blend", "blend", trained.blend, blend_inputs)
    row = {f"classifier_{k}": first[k] for k in ("p_calm", "p_volatile", "p_black_swan")}
    row.update(calm_p_up=0.6, volatile_p_up=0.4)
    (answer,) = _v1(blend, [row])["predictions"]
    assert list(answer) == ["p_up"]
    assert 0.0 < answer["p_up"] < 1.0


def test_train_registers_a_servable_classifier(
    own_mlflow: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m models.market_regime.train --model classifier --json`` as CI runs it: a
    version with the challenger alias, per-regime metrics in its result, and a model that
    Sluice's server loads from the registry and answers with the regime."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": own_mlflow.tracking_uri}
    result = subprocess.run(
        [sys.executable, "-m", "models.market_regime.train", "--model", "classifier", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["model"], report["version"], report["alias"]) == (
        "market-regime-classifier", 1, "challenger",
    )  # fmt: skip
    assert set(report["metrics"]) == {"all", *REGIMES}
    assert report["holdout_rows"]["black_swan"] > 50

    from mlflow import MlflowClient

    uri = MlflowClient(own_mlflow.tracking_uri).get_model_version_download_uri(
        "market-regime-classifier", "1"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow.tracking_uri)  # for the download
    servable = PyfuncServable(str(uri), download_dir=tmp_path / "download")
    servable.load()
    rows = servable.warm_up_rows()
    assert rows is not None
    (answer,) = _v1(servable, rows[:1])["predictions"]
    assert answer["regime"] in REGIMES
    assert (tmp_path / "download").exists()
