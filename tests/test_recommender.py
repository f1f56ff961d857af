"""The recommender example: its synthetic traffic and holiday shift, its ranking metrics and
gate, and its training step against a real MLflow server, served as Sluice's server serves it.

Everything but the last three tests runs without MLflow; those share one module fixture that
trains as the demo would: a normal-weeks champion, a holiday retraining after drift, and the
"faster but recommends worse" popularity variant, refused by the gate and then pushed with
``--skip-gate``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score
from support.gitops_repo import ROOT
from support.readme_blocks import console_commands

from controller.errors import DataValidationError
from controller.local.services import MlflowService
from controller.local.serving.pyfunc_model import PyfuncServable
from controller.quality.data_contract import validate_frame
from controller.quality.quality_gate import evaluate_gate, load_quality_gate
from models.recommender.contract import CONTRACT
from models.recommender.pipeline import fit, score, split_holdout
from models.recommender.ranking_metrics import click_metrics, ranking_metrics
from models.recommender.sessions import (
    CLICK,
    FEATURES,
    REQUEST_ID,
    REVENUE,
    SLATE,
    SLATE_SIZE,
    click_delay_seconds,
    click_probability,
    generate_impressions,
    shown_outcomes,
)
from models.recommender.sessions import main as sessions_main
from models.recommender.train import DEFAULT_GATE, main

SEED = 7
REQUESTS = 5_000  # the training step's default


def _top_pick_true_ctr(frame: pd.DataFrame, scores: np.ndarray) -> float:
    """The expected CTR, by the generator's truth, of each slate's top-scored item."""
    ranked = frame.assign(score=scores, truth=click_probability(frame))
    return float(ranked.loc[ranked.groupby(SLATE)["score"].idxmax(), "truth"].mean())


def _readme_row(model: str, metrics: dict[str, float], true_ctr: float) -> str:
    """The README's row of a model in its table of holiday-holdout numbers."""
    return (
        f"| {model} | {metrics['roc_auc']:.3f} | {metrics['calibration_error']:.3f} | "
        f"{metrics['top_pick_ctr']:.3f} | {true_ctr:.3f} | {metrics['ctr_lift']:.2f} |"
    )


README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def periods() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Training rows and holdout of each period, as the training step splits them."""
    return {
        period: split_holdout(generate_impressions(period, REQUESTS, SEED), SEED)
        for period in ("normal", "holiday")
    }


# -- the traffic -------------------------------------------------------------------------


def test_same_period_and_seed_give_the_same_impressions() -> None:
    """Generation is deterministic, so a holdout can be rebuilt anywhere; another seed or
    period gives other traffic."""
    first = generate_impressions("holiday", 800, SEED)
    pd.testing.assert_frame_equal(first, generate_impressions("holiday", 800, SEED))
    assert not first[CLICK].equals(generate_impressions("holiday", 800, SEED + 1)[CLICK])
    assert generate_impressions("normal", 800, SEED)["days_to_holiday"].min() >= 28
    assert first["days_to_holiday"].max() <= 20


def test_slates_show_distinct_items_and_only_clicks_bring_revenue() -> None:
    """Each request shows six different items to one user in one context; revenue is
    positive exactly on clicks and heavy-tailed."""
    frame = generate_impressions("normal", 2_000, SEED)
    assert len(frame) == 2_000 * SLATE_SIZE
    assert frame[REQUEST_ID].is_unique
    per_slate = frame.groupby(SLATE)
    assert (per_slate["item_id"].nunique() == SLATE_SIZE).all()
    for column in ("user_segment", "hour", "device", "days_to_holiday"):
        assert (per_slate[column].nunique() == 1).all()
    assert ((frame[REVENUE] > 0) == (frame[CLICK] == 1)).all()
    revenue = frame.loc[frame[CLICK] == 1, REVENUE]
    assert revenue.mean() > 1.5 * revenue.median()
    assert 0.10 < frame[CLICK].mean() < 0.25
    validate_frame(frame, CONTRACT, source="normal weeks")


def test_click_delays_are_seconds_to_minutes_and_fixed_per_request() -> None:
    """A click arrives 2 s to 15 min after its recommendation, about 40 s in the median, and a
    request's delay does not depend on which other requests are asked about."""
    ids = [f"r-{i}" for i in range(4_000)]
    delays = click_delay_seconds(ids, seed=3)
    assert delays.min() >= 2.0
    assert delays.max() <= 900.0
    assert 30.0 < float(np.median(delays)) < 50.0
    assert (delays > 120).mean() > 0.05
    assert click_delay_seconds(ids[::-1][:10], seed=3) == pytest.approx(delays[::-1][:10])
    assert not np.allclose(click_delay_seconds(ids[:10], seed=4), delays[:10])


def test_a_better_choice_is_clicked_more_often_whoever_chose_it() -> None:
    """The outcome of showing an item is drawn per request id from the truth: the same
    choice gets the same click, and showing each slate's best item gets more clicks than
    showing its worst."""
    frame = generate_impressions("holiday", 3_000, SEED)
    truth = frame.assign(truth=click_probability(frame))
    best = truth.loc[truth.groupby(SLATE)["truth"].idxmax()].reset_index(drop=True)
    worst = truth.loc[truth.groupby(SLATE)["truth"].idxmin()].reset_index(drop=True)
    # One request id per slate, whichever item is shown in it.
    for shown in (best, worst):
        shown[REQUEST_ID] = [f"req-{s}" for s in shown[SLATE]]
    best_outcomes = shown_outcomes(best, seed=SEED)
    pd.testing.assert_frame_equal(best_outcomes, shown_outcomes(best, seed=SEED))
    worst_outcomes = shown_outcomes(worst, seed=SEED)
    assert best_outcomes[CLICK].mean() > 3 * worst_outcomes[CLICK].mean()
    assert ((best_outcomes[REVENUE] > 0) == (best_outcomes[CLICK] == 1)).all()
    assert (best_outcomes["delay_seconds"] == worst_outcomes["delay_seconds"]).all()


def test_the_holiday_shift_costs_a_normal_weeks_model_and_retraining_wins_it_back(
    periods: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
) -> None:
    """On holiday traffic a model trained on normal weeks ranks worse (AUC, and the true CTR
    of its top pick) and is miscalibrated; one retrained on holiday weeks recovers both."""
    (normal_train, normal_holdout), (holiday_train, holiday_holdout) = periods.values()
    normal_model = fit("full", normal_train, SEED)
    holiday_model = fit("full", holiday_train, SEED)
    stale = click_metrics(
        holiday_holdout[SLATE], holiday_holdout[CLICK], score(normal_model, holiday_holdout)
    )
    fresh = click_metrics(
        holiday_holdout[SLATE], holiday_holdout[CLICK], score(holiday_model, holiday_holdout)
    )
    at_home = click_metrics(
        normal_holdout[SLATE], normal_holdout[CLICK], score(normal_model, normal_holdout)
    )
    truth = {
        "normal model, holiday": _top_pick_true_ctr(
            holiday_holdout, score(normal_model, holiday_holdout)
        ),
        "holiday model, holiday": _top_pick_true_ctr(
            holiday_holdout, score(holiday_model, holiday_holdout)
        ),
        "best possible, holiday": _top_pick_true_ctr(
            holiday_holdout, click_probability(holiday_holdout)
        ),
        "random pick, holiday": float(click_probability(holiday_holdout).mean()),
    }
    print("normal model on normal weeks:", {k: round(v, 3) for k, v in at_home.items()})
    print("normal model on holiday weeks:", {k: round(v, 3) for k, v in stale.items()})
    print("holiday model on holiday weeks:", {k: round(v, 3) for k, v in fresh.items()})
    print("true CTR of the top pick:", {k: round(v, 3) for k, v in truth.items()})

    assert at_home["roc_auc"] - stale["roc_auc"] > 0.15
    assert fresh["roc_auc"] - stale["roc_auc"] > 0.08
    assert truth["normal model, holiday"] < 0.8 * truth["holiday model, holiday"]
    assert truth["holiday model, holiday"] > 0.9 * truth["best possible, holiday"]
    assert fresh["ctr_lift"] > stale["ctr_lift"] + 0.3
    assert stale["calibration_error"] > 0.05 > fresh["calibration_error"]
    # The README quotes these numbers.
    stale_row = _readme_row("trained on normal weeks", stale, truth["normal model, holiday"])
    stale_row = stale_row.replace(
        "weeks |", f"weeks ({at_home['roc_auc']:.3f} AUC, {at_home['ctr_lift']:.2f} lift on "
        "normal weeks) |", 1,
    )  # fmt: skip
    assert stale_row in README
    assert _readme_row("retrained on holiday weeks", fresh, truth["holiday model, holiday"]) in (
        README
    )


def test_the_popularity_variant_ranks_worse_and_fails_the_gate(
    periods: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
) -> None:
    """Blind to the user and the context, the popularity model's top pick is clicked less
    on the same slates, and the gate refuses it; the full model passes."""
    train_rows, holdout = periods["holiday"]
    gate = load_quality_gate(DEFAULT_GATE)
    full = fit("full", train_rows, SEED)
    popularity = fit("popularity", train_rows, SEED)
    assert list(popularity.feature_names_in_) == [
        "item_price", "item_discount_pct", "item_popularity", "item_category",
    ]  # fmt: skip
    full_metrics = click_metrics(holdout[SLATE], holdout[CLICK], score(full, holdout))
    worse = click_metrics(holdout[SLATE], holdout[CLICK], score(popularity, holdout))
    assert worse["ctr_lift"] < full_metrics["ctr_lift"] - 0.2
    assert _top_pick_true_ctr(holdout, score(popularity, holdout)) < 0.9 * _top_pick_true_ctr(
        holdout, score(full, holdout)
    )
    assert _readme_row(
        "`--variant popularity`, holiday weeks",
        worse,
        _top_pick_true_ctr(holdout, score(popularity, holdout)),
    ) in README  # fmt: skip
    assert evaluate_gate(full_metrics, None, gate).passed
    alone = evaluate_gate(worse, None, gate)
    assert [check.metric for check in alone.failures] == ["roc_auc"]
    against_full = evaluate_gate(worse, full_metrics, gate)
    assert {check.metric for check in against_full.failures} >= {"roc_auc", "ctr_lift"}


def test_the_traffic_is_written_for_drift_requests_and_feedback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m models.recommender.sessions`` writes a table, a V1 body and the clicks of
    the same rows with their delays; an unwritable ``--out`` is one line and exit 2."""
    table, body, clicks = tmp_path / "h.csv", tmp_path / "h.json", tmp_path / "clicks.csv"
    assert sessions_main(["--period", "holiday", "--requests", "20", "--out", str(table)]) == 0
    assert sessions_main(
        ["--period", "holiday", "--requests", "20", "--out", str(body), "--outcomes", str(clicks)]
    ) == 0  # fmt: skip
    written = pd.read_csv(table)
    pd.testing.assert_frame_equal(
        written, generate_impressions("holiday", 20, seed=11), check_dtype=False
    )
    instances = json.loads(body.read_text())["instances"]
    assert len(instances) == 120
    assert list(instances[0]) == FEATURES
    outcomes = pd.read_csv(clicks)
    assert list(outcomes.columns) == [REQUEST_ID, CLICK, REVENUE, "delay_seconds"]
    assert list(outcomes[REQUEST_ID]) == list(written[REQUEST_ID])
    assert list(outcomes[CLICK]) == list(written[CLICK])

    assert sessions_main(["--out", str(tmp_path / "missing" / "x.csv")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "missing/x.csv" in line
    assert "give a writable --out" in line


# -- metrics and contract ----------------------------------------------------------------


def test_ranking_metrics_agree_with_a_hand_count_and_sklearn() -> None:
    """Top-pick CTR, lift and NDCG@3 of two slates, and NDCG as scikit-learn computes it."""
    slates = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    clicks = [0, 1, 0, 1, 0, 1, 0, 0, 0]
    scores = [0.9, 0.5, 0.1, 0.8, 0.7, 0.2, 0.3, 0.2, 0.1]
    metrics = ranking_metrics(slates, clicks, scores)
    assert metrics["top_pick_ctr"] == pytest.approx(1 / 3)
    assert metrics["random_pick_ctr"] == pytest.approx(3 / 9)
    assert metrics["ctr_lift"] == pytest.approx(1.0)
    expected = np.mean(
        [
            ndcg_score([clicks[0:3]], [scores[0:3]], k=3),
            ndcg_score([clicks[3:6]], [scores[3:6]], k=3),
        ]
    )  # the slate without a click is not judged
    assert metrics["ndcg_at_3"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda f: f.drop(columns=["device"]), "missing columns ['device']"),
        (lambda f: f.assign(item_popularity=f["item_popularity"] * 100), "above 1"),
        (lambda f: f.assign(hour=f["hour"] + 24), "'hour' has"),
        (lambda f: f.assign(click=0), "label 'click' rate 0.00%"),
    ],
)
def test_corrupt_data_breaks_the_contract_in_one_line(corrupt: Any, message: str) -> None:
    """A broken column or a stopped click feed is one line that names it."""
    frame = corrupt(generate_impressions("normal", 600, SEED))
    with pytest.raises(DataValidationError, match=re.escape(message)) as raised:
        validate_frame(frame, CONTRACT, source="clicks.csv")
    assert "\n" not in raised.value.message


def test_a_corrupt_data_file_exits_2_before_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--data`` with prices as text is one line naming the file, and exit 2 with no
    registry reachable: the contract is checked before MLflow is asked anything."""
    path = tmp_path / "clicks.csv"
    frame = generate_impressions("normal", 600, SEED)
    frame.assign(item_price=frame["item_price"].astype(str) + " EUR").to_csv(path, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert main(["--data", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert f"{path} fails the data contract: column 'item_price' must be numeric" in line


# -- the training step -------------------------------------------------------------------


def _train(tracking_uri: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "models.recommender.train", *args],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--skip-gate"], "--skip-gate is only for --variant popularity"),
        (["--period", "autumn"], "invalid choice: 'autumn'"),
        (["--requests", "10"], "--requests must be at least 500"),
        (["--period", "holiday", "--since", "2026-12-01"], "not allowed with argument"),
        (["--since", "yesterday"], "'yesterday' is not an ISO 8601 time"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag is one line on stderr and exit 2, before any registry is asked."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


@dataclass
class Trained:
    """The demo's training runs, in order, against one registry."""

    tracking_uri: str
    name: str
    runs: dict[str, subprocess.CompletedProcess[str]]

    def output(self, run: str) -> dict[str, Any]:
        result = self.runs[run]
        assert result.returncode in (0, 1), result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return report


@pytest.fixture(scope="module")
def trained(mlflow_server: MlflowService) -> Trained:
    """v1 on normal weeks, made champion; v2 retrained after drift (``--since``, the
    holiday weeks), made champion as a promotion would; v3 the popularity variant; v4 the
    same with ``--skip-gate``."""
    from mlflow import MlflowClient

    uri, name = mlflow_server.tracking_uri, f"recommender-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(uri)
    runs = {"normal": _train(uri, "--model-name", name, "--json")}
    client.set_registered_model_alias(name, "champion", "1")
    runs["retrain"] = _train(
        uri, "--model-name", name, "--since", "2026-12-01T00:00:00+00:00", "--json",
        SLUICE_RETRAIN_REASON="drift in days_to_holiday",
    )  # fmt: skip
    client.set_registered_model_alias(name, "champion", "2")
    worse = ("--model-name", name, "--period", "holiday", "--variant", "popularity")
    runs["popularity"] = _train(uri, *worse, "--json")
    runs["pushed"] = _train(uri, *worse, "--skip-gate", COLUMNS="200")  # rich: one line each
    return Trained(uri, name, runs)


@pytest.mark.slow
def test_normal_weeks_register_a_challenger_that_serves_p_click(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first version passes the gate, gets the challenger alias, and Sluice's model server
    loads it from the registry and answers each V1 instance with ``{"p_click": ...}``."""
    report = trained.output("normal")
    assert (report["version"], report["alias"], report["gate"]["passed"]) == (1, "challenger", True)
    assert report["champion_version"] is None
    assert report["holdout_slates"] == REQUESTS // 4
    assert report["metrics"]["ctr_lift"] > 1.9

    from mlflow import MlflowClient

    client = MlflowClient(trained.tracking_uri)
    version = client.get_model_version(trained.name, "1")
    assert version.tags["sluice.gate"] == "passed"
    assert version.tags["recommender.variant"] == "full"
    assert {"reference_profile.json", "quality_gate.json"} <= {
        a.path for a in client.list_artifacts(version.run_id)
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)  # for the download
    uri = client.get_model_version_download_uri(trained.name, "1")
    servable = PyfuncServable(str(uri), download_dir=tmp_path / "download")
    servable.load()
    assert [name for name, _ in servable.columns] == FEATURES
    rows = servable.warm_up_rows()  # the logged input example
    assert rows is not None
    assert len(rows) == 5
    body = json.loads(json.dumps({"predictions": servable.predictions(
        servable.predict(servable.frame_from_instances(rows))
    )}))  # fmt: skip
    assert len(body["predictions"]) == 5
    for answer in body["predictions"]:
        assert list(answer) == ["p_click"]
        assert 0.0 < answer["p_click"] < 1.0


@pytest.mark.slow
def test_a_holiday_retrain_beats_the_normal_champion_on_the_same_slates(
    trained: Trained,
) -> None:
    """``--since`` (Sluice's retrain command) trains on the holiday weeks; the normal-weeks
    champion, ranking the same holdout slates, is beaten on lift and calibration, and the
    version records why it was trained."""
    report = trained.output("retrain")
    assert trained.runs["retrain"].returncode == 0
    assert (report["version"], report["alias"], report["period"]) == (2, "challenger", "holiday")
    assert report["champion_version"] == 1
    candidate, champion = report["metrics"], report["champion_metrics"]
    assert candidate["ctr_lift"] > champion["ctr_lift"] + 0.3
    assert candidate["roc_auc"] > champion["roc_auc"] + 0.08
    assert champion["calibration_error"] > 0.05

    from mlflow import MlflowClient

    tags = MlflowClient(trained.tracking_uri).get_model_version(trained.name, "2").tags
    assert tags["sluice.retrain.reason"] == "drift in days_to_holiday"


@pytest.mark.slow
def test_the_popularity_variant_is_refused_unless_the_gate_is_skipped(
    trained: Trained,
) -> None:
    """Against the holiday champion on the same slates the popularity variant fails (exit 1,
    no alias); with ``--skip-gate`` it becomes the challenger, tagged ``skipped``."""
    refused = trained.output("popularity")
    assert trained.runs["popularity"].returncode == 1
    assert refused["alias"] is None
    assert refused["champion_version"] == 2
    assert refused["metrics"]["ctr_lift"] < refused["champion_metrics"]["ctr_lift"] - 0.2
    failed = {c["metric"] for c in refused["gate"]["checks"] if not c["passed"]}
    assert {"roc_auc", "ctr_lift"} <= failed

    pushed = trained.runs["pushed"]
    assert pushed.returncode == 0, pushed.stderr
    assert "skipped (--skip-gate), alias challenger set" in pushed.stdout
    from mlflow import MlflowClient

    client = MlflowClient(trained.tracking_uri)
    version = client.get_model_version_by_alias(trained.name, "challenger")
    assert version.version == "4"
    assert version.tags["sluice.gate"] == "skipped"
    assert version.tags["recommender.variant"] == "popularity"
    assert version.tags["sluice.gate_summary"].startswith("failed:")


@pytest.mark.slow
def test_the_readme_outcome_block_shows_the_click_rate_per_segment(
    trained: Trained, tmp_path: Path
) -> None:
    """The README's ``--outcome click`` block, against v1 (trained on normal weeks, as the
    block's first command trains it; it logs a profile per user segment, with its click
    label): the holiday's inputs drift neither as a whole nor per segment (exit 0), while the
    bargain hunters' click rate falls against their own training rows. The printed lines are
    the README's."""
    _, write, drift = console_commands("## Monitoring drift", containing="--outcome click")
    assert drift.startswith("sluice drift recommender --alias challenger --current holiday.csv")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "120",
        "MLFLOW_TRACKING_URI": trained.tracking_uri,
        "SLUICE_REGISTRY_REQUEST_RETRIES": "0",
        "PYTHONPATH": str(ROOT),
    }

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip

    assert run(write).returncode == 0
    v1 = drift.replace("recommender --alias challenger", f"{trained.name} --version 1")
    done = run(v1)
    assert done.returncode == 0, done.stderr
    readme = README.split("```text\nNO DRIFT: 3 of 9", 1)[1].split("```", 1)[0]
    printed = {line.rstrip() for line in done.stdout.splitlines()}
    for line in ("NO DRIFT: 3 of 9" + readme).strip().splitlines():
        assert line == "…" or line.rstrip() in printed, line

    output = json.loads(run(f"{v1} --json").stdout)
    assert output["by"]["reference"] == "per-slice"
    assert output["outcome"]["notes"] == []
    change = {part["value"]: part["outcome"]["change"] for part in output["by"]["slices"]}
    assert change["bargain"] < -0.1 < 0.0 < change["loyal"]
