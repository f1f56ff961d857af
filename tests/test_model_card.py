"""Tests of the model card, read as the Markdown a reviewer sees in the pull request."""

from __future__ import annotations

from dataclasses import replace
from string import Template

import pytest

from controller.domain import ModelVersion, RunSummary
from controller.proposals.model_card import ModelCard, fill_template, render_model_card
from controller.quality.data_profile import CategoricalProfile, DataProfile, NumericProfile

RUN_ID = "4f1c2a9e8b7d6c5b4a39281706f5e4d3"
DIFF = """\
--- a/manifests/overlays/staging/fraud-detector.yaml
+++ b/manifests/overlays/staging/fraud-detector.yaml
@@ -6,2 +6,3 @@
-  storageUri: s3://models/fraud-detector/2
+  storageUri: s3://models/fraud-detector/3
+  canaryTrafficPercent: 10
"""
METRICS = {
    "roc_auc": 0.9512,
    "pr_auc": 0.6231,
    "recall_at_1pct_fpr": 0.5802,
    "calibration_error": 0.0123,
}
CHAMPION = {
    "champion_roc_auc": 0.9487,
    "champion_pr_auc": 0.6231,
    "champion_recall_at_1pct_fpr": 0.6010,
    "champion_calibration_error": 0.0151,
}
PARAMS = {
    "data": "synthetic week 1 (seed 7, 20000 rows)",
    "holdout_rows": "5000",
    "holdout_digest": "9c1e5f0a7b3d2c4e",
    "champion_version": "2",
}


def numeric(mean: float, std: float, low: float, high: float) -> NumericProfile:
    """A numeric feature profile with the moments the card shows."""
    return NumericProfile(
        count=100, nulls=0, minimum=low, maximum=high, mean=mean, std=std,
        bin_edges=[mean], bin_counts=[50, 50], sample=[low, mean, high],
    )  # fmt: skip


def make_card(**changes: object) -> ModelCard:
    """A card for fraud-detector v3 replacing v2 in staging, with a champion comparison."""
    card = ModelCard(
        model="fraud-detector",
        environment="staging",
        version=ModelVersion(
            name="fraud-detector",
            version=3,
            run_id=RUN_ID,
            source="models:/m-abc",
            artifact_uri="mlflow-artifacts:/1/models/m-abc/artifacts",
            tags={"sluice.gate_summary": "passed"},
        ),
        previous_version=2,
        run=RunSummary(
            run_id=RUN_ID,
            url=f"http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID}",
            metrics={**METRICS, **CHAMPION},
            params=PARAMS,
        ),
        registry_url="http://127.0.0.1:5000/#/models/fraud-detector/versions/3",
        storage_uri="s3://models/fraud-detector/3",
        champion_version=2,
        canary_steps=(10, 50, 100),
        gates=("request-success-rate", "request-latency", "load-test"),
        diff=DIFF,
        profile=None,
    )
    return replace(card, **changes)  # type: ignore[arg-type]


def first_version_card() -> ModelCard:
    """A card for the first version of a model anywhere: no champion, no previous version."""
    card = make_card(previous_version=None, champion_version=None)
    return replace(card, run=replace(card.run, metrics=METRICS, params={"data": "week 0"}))


def test_heading_names_model_version_and_environment() -> None:
    """The card opens with the model, the version and the environment."""
    assert render_model_card(make_card()).startswith("## fraud-detector v3 → staging\n")


def test_links_to_run_and_registry_and_shows_storage_uri() -> None:
    """The card links the MLflow run and the registry version and shows the storage URI."""
    card = render_model_card(make_card())
    assert f"[MLflow run `4f1c2a9e8b7d`](http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID})" in (
        card
    )
    assert "[registry: fraud-detector v3](http://127.0.0.1:5000/#/models/fraud-detector/" in card
    assert "artifacts `s3://models/fraud-detector/3`" in card


def test_metrics_table_compares_with_champion() -> None:
    """Each metric shows the candidate, the champion, the signed delta and a verdict."""
    card = render_model_card(make_card())
    assert "| metric | v3 (candidate) | v2 (champion) | Δ | |" in card
    assert "| roc_auc | 0.9512 | 0.9487 | +0.0025 | ↑ ✓ better |" in card
    assert "| recall_at_1pct_fpr | 0.5802 | 0.6010 | -0.0208 | ↓ ✗ worse |" in card
    assert "| pr_auc | 0.6231 | 0.6231 | 0.0000 | = same |" in card


def test_lower_calibration_error_is_better() -> None:
    """A falling calibration error is marked better and a rising one worse."""
    assert "| calibration_error (lower is better) | 0.0123 | 0.0151 | -0.0028 | ↓ ✓ better |" in (
        render_model_card(make_card())
    )
    card = make_card()
    worse = replace(card.run, metrics={**card.run.metrics, "calibration_error": 0.0200})
    assert "| 0.0200 | 0.0151 | +0.0049 | ↑ ✗ worse |" in render_model_card(
        replace(card, run=worse)
    )


def test_extra_metrics_follow_key_metrics_in_name_order() -> None:
    """Metrics beyond the four key ones follow them alphabetically; champion_* are not rows."""
    card = make_card()
    run = replace(card.run, metrics={"log_loss": 0.1, "brier": 0.02, **card.run.metrics})
    rows = [
        line.split(" | ")[0].removeprefix("| ")
        for line in render_model_card(replace(card, run=run)).splitlines()
        if line.startswith("| ") and line[2:4] not in ("me", "--")
    ]
    assert rows == [
        "roc_auc",
        "pr_auc",
        "recall_at_1pct_fpr",
        "calibration_error (lower is better)",
        "brier",
        "log_loss",
    ]


def test_first_version_has_no_champion_to_compare() -> None:
    """Without a champion the card says so and shows the candidate's metrics alone."""
    card = render_model_card(first_version_card())
    assert "No champion to compare: first version in this environment." in card
    assert "| metric | v3 |" in card
    assert "| roc_auc | 0.9512 |" in card
    assert "champion)" not in card


def test_champion_is_taken_from_the_run() -> None:
    """The compared champion is the one the run measured, and a newer champion is named."""
    card = render_model_card(make_card(champion_version=4))
    assert "v2 (champion)" in card
    assert "The champion is now v4." in card


def test_quality_gate_and_training_data_are_shown() -> None:
    """The gate summary and the training data with holdout size and digest are listed."""
    card = render_model_card(make_card())
    assert "- **Quality gate:** passed\n" in card
    assert (
        "- **Trained on:** synthetic week 1 (seed 7, 20000 rows) · holdout 5,000 rows, "
        "digest `9c1e5f0a7b3d2c4e`\n"
    ) in card


def test_missing_gate_summary_is_said() -> None:
    """A version without a gate summary says it was not recorded."""
    card = make_card()
    version = replace(card.version, tags={})
    assert "- **Quality gate:** not recorded\n" in render_model_card(replace(card, version=version))


def test_diff_is_a_fenced_diff_block() -> None:
    """The manifest diff appears verbatim in a diff code block."""
    assert f"```diff\n{DIFF}```\n" in render_model_card(make_card())


def test_backticks_in_diff_lengthen_the_fence() -> None:
    """A diff containing a code fence is wrapped in a longer fence so it cannot close early."""
    card = render_model_card(make_card(diff="+  note: ```x```\n"))
    assert "````diff\n+  note: ```x```\n````" in card


def test_canary_steps_and_gates_describe_the_rollout() -> None:
    """Replacing a version walks the canary steps, each gated, with rollback to the previous."""
    card = render_model_card(make_card())
    assert "Canary: v3 takes 10% → 50% → 100% of the traffic, v2 serves the rest." in card
    assert "`request-success-rate`, `request-latency`, `load-test`" in card
    assert "rolls back to v2" in card


def test_the_smoke_comes_first_in_what_happens_on_merge() -> None:
    """With the pre-traffic smoke (on by default) the reviewer reads that the new version starts
    at 0% and answers the smoke on its tag route before the canary's first step."""
    card = render_model_card(make_card(smoke_requests=50))
    rollout = card[card.index("### What happens on merge") :]
    assert "2. Smoke: v3's revision starts at 0% of the traffic" in rollout
    assert "sends it 50 of its\n   logged input examples on its tag route" in rollout
    assert "3. Canary: v3 takes 10% → 50% → 100% of the traffic, v2 serves the rest." in rollout
    assert "5. A failing, erroring or silent gate rolls back to v2" in rollout
    assert "Smoke" not in render_model_card(make_card())


def test_first_deploy_goes_straight_to_full_traffic() -> None:
    """Without a previous version the card says the deploy goes straight to 100%."""
    card = render_model_card(first_version_card())
    assert "First deploy: straight to 100%" in card
    assert "Canary" not in card


def test_marker_ends_the_card() -> None:
    """The card ends with the hidden marker that identifies model, environment and version."""
    card = render_model_card(make_card())
    assert card.endswith("<!-- sluice:model-card model=fraud-detector env=staging version=3 -->\n")


def test_profile_summarises_features() -> None:
    """The data profile shows rows, label rate, numeric moments and the top three categories."""
    profile = DataProfile(
        rows=20000,
        label_rate=0.0191,
        features={
            "amount": numeric(59.2, 41.3, 0.43, 2917.5),
            "merchant": CategoricalProfile(
                count=100,
                nulls=0,
                frequencies={"online": 30, "grocery": 40, "travel": 20, "fuel|gas": 10},
            ),
        },
    )
    card = render_model_card(make_card(profile=profile))
    assert "Training data: 20,000 rows, label rate 1.91%" in card
    assert "| amount | numeric | mean 59.20 · std 41.30 · min 0.43 · max 2,918 |" in card
    assert "| merchant | categorical | 4 categories: grocery 40%, online 30%, travel 20% |" in card


def test_pipe_in_table_cell_is_escaped() -> None:
    """A pipe inside a category name is escaped so it does not split the table cell."""
    profile = DataProfile(
        rows=100,
        features={"merchant": CategoricalProfile(count=100, nulls=0, frequencies={"a|b": 100})},
    )
    assert "1 category: a\\|b 100% |" in render_model_card(make_card(profile=profile))


def test_profile_of_many_features_stays_short() -> None:
    """A wide profile lists the first features and counts the rest, in under 25 lines."""
    features = {f"f{index:02d}": numeric(1.0, 1.0, 0.0, 2.0) for index in range(30)}
    card = render_model_card(make_card(profile=DataProfile(rows=10, features=features)))
    section = card[card.index("<details>") : card.index("</details>")]
    assert "| … | | 18 more features |" in section
    assert len(section.splitlines()) <= 25


def test_rendering_is_deterministic() -> None:
    """The same card with metrics in another order renders byte for byte the same."""
    card = make_card()
    shuffled = replace(card.run, metrics=dict(reversed(list(card.run.metrics.items()))))
    assert render_model_card(replace(card, run=shuffled)) == render_model_card(card)


def test_credentials_in_urls_are_masked() -> None:
    """Credentials embedded in a run URL never reach the pull request body."""
    card = make_card()
    run = replace(card.run, url="https://alice:s3cr3t-pass@mlflow.example/#/runs/1")
    text = render_model_card(replace(card, run=run))
    assert "s3cr3t-pass" not in text
    assert "(https://***@mlflow.example/#/runs/1)" in text


def test_missing_template_variable_raises() -> None:
    """A template variable without a value is an error that names it."""
    with pytest.raises(ValueError, match=r"without values: \['environment'\]"):
        fill_template(Template("$model in $environment"), {"model": "fraud-detector"})


def test_value_without_variable_raises() -> None:
    """A value the template never uses is an error too, so a renamed variable is caught."""
    with pytest.raises(ValueError, match=r"values without variables: \['env'\]"):
        fill_template(Template("$model"), {"model": "fraud-detector", "env": "staging"})


def test_version_without_run_says_so() -> None:
    """A version registered without a run says there is no run and no metrics to show."""
    card = render_model_card(make_card(run=RunSummary(run_id="-", url="-")))
    assert "No MLflow run recorded · [registry: fraud-detector v3]" in card
    assert "No holdout metrics were logged with v3's run.\n\n- **Quality gate:**" in card
