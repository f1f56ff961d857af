"""`sluice drift` against a version trained by the real training step, run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from support.readme_blocks import README, console_commands
from support.registry import register_version

from controller.drift import detect_drift_from_profile
from controller.drift.report_html import render_report
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.quality.data_profile import build_profile
from models.fraud_detector.data import FEATURES, generate_transactions
from models.market_regime.market import REGIME, market_frame

ROOT = Path(__file__).resolve().parent.parent


def sluice(tracking_uri: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SLUICE_REGISTRY_REQUEST_RETRIES": "0",
        "COLUMNS": "120",
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "drift", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused run (and nothing on stdout)."""
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Current data files: the training week again (CSV) and eight weeks later (Parquet)."""
    root = tmp_path_factory.mktemp("drift-data")
    generate_transactions(week=0, seed=99).to_csv(root / "week0.csv", index=False)
    generate_transactions(week=8, seed=99).to_parquet(root / "week8.parquet")
    return root


@pytest.fixture(scope="module")
def champion(mlflow_server: MlflowService) -> str:
    """A model trained by the real training step (which logs its profile), aliased champion."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000"]
    trained = subprocess.run(
        [*command, "--json", "--model-name", name],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert trained.returncode in (0, 1), trained.stderr  # 1: registered, gate failed
    version = json.loads(trained.stdout)["version"]
    MlflowClient(mlflow_server.tracking_uri).set_registered_model_alias(
        name, "champion", str(version)
    )
    return name


@pytest.fixture(scope="module")
def shifted(
    mlflow_server: MlflowService, champion: str, data: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One run on week 8 with --json and --html, shared by the tests that read its outputs."""
    report = data / "report.html"
    result = sluice(
        mlflow_server.tracking_uri, data, champion,
        "--current", str(data / "week8.parquet"), "--json", "--html", str(report),
    )  # fmt: skip
    return result, report


@pytest.mark.slow
def test_the_training_week_does_not_drift(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """Fresh data of the training week exits 0 with every feature in the table, none drifted."""
    result = sluice(mlflow_server.tracking_uri, data, champion, "--current", "week0.csv")
    assert result.returncode == 0, result.stderr
    for feature in FEATURES:
        assert re.search(rf"│ {feature} .*│ ✓ no  │", result.stdout), feature
    assert "✗ yes" not in result.stdout
    assert "NO DRIFT: 0 of 6 features drifted (0% < drift share 50%)" in result.stdout


@pytest.mark.slow
def test_eight_weeks_later_drifts_on_amount(
    shifted: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Week 8 exits 1 and the JSON lists amount among the drifted features."""
    result, _ = shifted
    assert result.returncode == 1, result.stderr
    output = json.loads(result.stdout)
    assert output["drifted"] is True
    assert "amount" in output["drifted_features"]
    assert output["drifted_share"] >= output["drift_share"] == 0.5
    (amount,) = [f for f in output["features"] if f["feature"] == "amount"]
    assert amount["method"] == "wasserstein"
    assert amount["value"] >= amount["threshold"] == 0.1
    assert amount["drifted"] is True
    assert [f["feature"] for f in output["features"]] == FEATURES


@pytest.mark.slow
def test_html_report_is_self_contained_with_a_plot_per_drifted_feature(
    shifted: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """--html writes one file with the table, an inline SVG per drifted feature, no links."""
    result, report = shifted
    text = report.read_text(encoding="utf-8")
    drifted = json.loads(result.stdout)["drifted_features"]
    assert text.count("<svg") == len(drifted) >= 1
    for feature in FEATURES:
        assert f"<td>{feature}</td>" in text
    assert "<script" not in text
    assert "http" not in text
    assert "<link" not in text


@pytest.mark.slow
def test_threshold_config_changes_the_verdict(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """A drift share of 100% and a lenient amount threshold turn week 8 into no drift."""
    config = data / "thresholds.yaml"
    config.write_text("drift_share: 1.0\nfeatures:\n  amount: {method: psi, threshold: 5}\n")
    result = sluice(
        mlflow_server.tracking_uri, data, champion,
        "--current", "week8.parquet", "--threshold-config", str(config), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["drift_share"] == 1.0
    (amount,) = [f for f in output["features"] if f["feature"] == "amount"]
    assert (amount["method"], amount["threshold"], amount["drifted"]) == ("psi", 5.0, False)


@pytest.mark.slow
def test_missing_column_is_named(mlflow_server: MlflowService, champion: str, data: Path) -> None:
    """A file without a profile feature exits 2 with one line naming the column."""
    path = data / "no_country.csv"
    generate_transactions(week=0, rows=500, seed=1).drop(columns=["country"]).to_csv(
        path, index=False
    )
    result = sluice(mlflow_server.tracking_uri, data, champion, "--current", str(path))
    assert result.returncode == 2
    assert "lacks feature columns" in one_line(result)
    assert "country" in one_line(result)


@pytest.mark.slow
def test_data_of_another_model_is_refused(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """A file sharing fewer than half of the profile's features is called another model's data."""
    path = data / "other.csv"
    pd.DataFrame({"amount": [1.0, 2.0], "age": [30, 40], "income": [1e3, 2e3]}).to_csv(
        path, index=False
    )
    result = sluice(mlflow_server.tracking_uri, data, champion, "--current", str(path))
    assert result.returncode == 2
    assert "only 1 of the 6 features" in one_line(result)
    assert "another model" in one_line(result)


@pytest.mark.slow
def test_text_in_a_numeric_feature_is_refused(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """Strings in a numeric column exit 2 with one line naming the feature and a bad value."""
    frame = generate_transactions(week=0, rows=500, seed=1)
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[3, "amount"] = "twelve"
    path = data / "text_amount.csv"
    frame.to_csv(path, index=False)
    result = sluice(mlflow_server.tracking_uri, data, champion, "--current", str(path))
    assert result.returncode == 2
    line = one_line(result)
    assert "feature 'amount' is numeric" in line
    assert "'twelve'" in line


@pytest.mark.slow
def test_version_without_profile_is_refused(mlflow_server: MlflowService, data: Path) -> None:
    """A version whose run logged no profile exits 2 and says it was not trained by Sluice."""
    name = f"plain-{uuid.uuid4().hex[:8]}"
    version = register_version(mlflow_server.tracking_uri, name, alias="champion")
    result = sluice(mlflow_server.tracking_uri, data, name, "--current", "week0.csv")
    assert result.returncode == 2
    assert one_line(result) == (
        f"sluice: error: version {version} of {name} has no reference profile: it was not "
        "trained by a Sluice-aware training step"
    )


@pytest.mark.slow
def test_unknown_version_is_refused(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """A version the model does not have exits 2 with one line."""
    result = sluice(
        mlflow_server.tracking_uri, data, champion, "--version", "99", "--current", "week0.csv"
    )
    assert result.returncode == 2
    assert "not found" in one_line(result)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"amount,hour\n", "has no rows"),
        ("data.json", b"{}", "unknown file type '.json'"),
        ("broken.parquet", b"not parquet", "cannot be read"),
        ("absent.csv", None, "does not exist"),
    ],
)
def test_unusable_file_is_refused_before_the_registry(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    """An empty, unknown or unreadable file exits 2 with one line, with no registry running."""
    if content is not None:
        (tmp_path / name).write_bytes(content)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = sluice(nowhere, tmp_path, "fraud-detector", "--current", name)
    assert result.returncode == 2
    assert message in one_line(result)


def test_unreachable_registry_exits_3(tmp_path: Path) -> None:
    """With no registry at the tracking URI, a valid file exits 3 with one line."""
    generate_transactions(week=0, rows=100).to_csv(tmp_path / "now.csv", index=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = sluice(nowhere, tmp_path, "fraud-detector", "--current", "now.csv")
    assert result.returncode == 3
    assert "unreachable" in one_line(result)


def test_html_report_escapes_names_from_the_data() -> None:
    """Feature and category names are escaped: markup in the data never becomes markup."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"<b>n</b>": rng.normal(size=2000), "cat": rng.choice(["a", "b"], size=2000)}
    )
    current = pd.DataFrame(
        {
            "<b>n</b>": rng.normal(3.0, size=2000),
            "cat": rng.choice(["a", "<script>x</script>"], size=2000),
        }
    )
    profile = build_profile(reference, numeric=["<b>n</b>"], categorical=["cat"])
    result = detect_drift_from_profile(profile, current)
    assert result.drifted_features == ("<b>n</b>", "cat")
    text = render_report(result, profile, current, title="<i>model</i>", details=[("a&b", "<x>")])
    assert "<b>" not in text
    assert "<script" not in text
    assert "<i>" not in text
    assert "&lt;b&gt;n&lt;/b&gt;" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text  # the category, in a bar's tooltip
    assert text.count("<svg") == 2


# -- `--by COLUMN`: drift per slice ------------------------------------------------------


@pytest.fixture(scope="module")
def channels(data: Path) -> Path:
    """3,000 transactions by channel: app and web from the training week, partner from four
    weeks later; a third of the rows moved, which the whole file does not show."""
    frame = pd.concat(
        [
            generate_transactions(week=0, rows=2_000, seed=5).assign(
                channel=["app", "web"] * 1_000
            ),
            generate_transactions(week=4, rows=1_000, seed=5).assign(channel="partner"),
        ],
        ignore_index=True,
    )
    path = data / "channels.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_by_channel_exits_1_when_only_a_slice_drifts(
    mlflow_server: MlflowService, champion: str, channels: Path
) -> None:
    """The whole file does not drift, the partner channel does: exit 1, and the JSON's "by"
    has a slice per channel, sorted, each with the whole file's per-feature report; the HTML
    report has a section per channel."""
    report = channels.with_name("channels.html")
    result = sluice(
        mlflow_server.tracking_uri, channels.parent, champion,
        "--current", channels.name, "--by", "channel", "--json", "--html", str(report),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    output = json.loads(result.stdout)
    assert output["drifted"] is False
    by = output["by"]
    assert (by["column"], by["min_rows"], by["drifted"]) == ("channel", 500, True)
    # The fraud detector logs no per-channel profiles: every slice against the pooled one.
    assert (by["reference"], by["profiles_by"]) == ("pooled", None)
    assert by["notes"][0].startswith("Note: each slice is compared with the whole (pooled)")
    assert by["drifted_values"] == ["partner"]
    assert [(s["value"], s["rows"], s["drifted"]) for s in by["slices"]] == [
        ("app", 1_000, False),
        ("partner", 1_000, True),
        ("web", 1_000, False),
    ]
    for part in by["slices"]:
        assert [f["feature"] for f in part["features"]] == FEATURES
        assert set(part["features"][0]) == set(output["features"][0])
    assert by["summary"] == "SLICES DRIFT by channel: 1 of 3 judged slices drifted (partner)"

    page = report.read_text(encoding="utf-8")
    assert page.count("<section>") == 3
    for value in ("app", "partner", "web"):
        assert f"channel = {value} (1,000 rows)" in page
    assert "<script" not in page


@pytest.mark.slow
def test_the_readme_drift_by_regime_block(own_mlflow: MlflowService, tmp_path: Path) -> None:
    """The README's `--by regime` block, run as written from the repository's root: train the
    market-regime classifier (it logs its training profile and one per regime), write a market
    it did not learn from, and judge it per regime, each regime against its own training rows,
    with the market's thresholds. Nothing changed, so nothing drifts: exit 0, a row per regime
    in order, the black-swan days too few to judge. The same version with --json says
    "per-slice"; sliced by another column, the slices are pooled and a note says so."""
    *setup, drift = console_commands("## Monitoring drift", containing="--by regime")
    assert drift == (
        "sluice drift market-regime-classifier --alias challenger --current market.csv "
        "--by regime --threshold-config models/market_regime/drift_thresholds.yaml"
    )
    (tmp_path / "models").symlink_to(ROOT / "models")  # the paths of the repository's root
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "120",
        "MLFLOW_TRACKING_URI": own_mlflow.tracking_uri,
        "SLUICE_REGISTRY_REQUEST_RETRIES": "0",
        "PYTHONPATH": str(ROOT),
    }

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip

    for command in setup:
        result = run(command)
        assert result.returncode == 0, (command, result.stderr)
    done = run(drift)
    assert done.returncode == 0, done.stderr

    market = pd.read_csv(tmp_path / "market.csv")
    rows = market[REGIME].value_counts()
    assert rows["black_swan"] < 500 <= rows["volatile"]
    out = done.stdout
    table = out[out.index("By regime: each slice against its own training profile") :]
    assert re.search(
        rf"│ black_swan +│ +{rows['black_swan']} │ +\d+ │ +- │ too few rows \(< 500\)", table
    )
    for regime in ("calm", "volatile"):
        assert re.search(rf"│ {regime} +│ +{rows[regime]:,} │ +[\d,]+ │ +0 / 8 │ ✓ no drift", table)
    assert table.index("black_swan") < table.index("calm") < table.index("volatile")
    assert "Note:" not in out  # every regime had a training profile of its own
    assert out.index("┃ feature ") < out.index("By regime")  # the whole file's table first
    assert "NO DRIFT: 0 of 8 features drifted" in out  # as the README says, the whole file too
    # The README shows the slice table and its line as printed, line for line.
    readme = README.read_text(encoding="utf-8")
    shown = readme.split("```text\nBy regime:", 1)[1].split("```", 1)[0]
    printed = {line.rstrip() for line in out.splitlines()}
    for line in ("By regime:" + shown).strip().splitlines():
        assert line.rstrip() in printed, line

    output = json.loads(run(f"{drift} --json").stdout)["by"]
    assert (output["reference"], output["profiles_by"], output["notes"]) == (
        "per-slice", "regime", [],
    )  # fmt: skip
    assert [(s["value"], s["reference"]) for s in output["slices"]] == [
        ("black_swan", "slice"), ("calm", "slice"), ("volatile", "slice"),
    ]  # fmt: skip
    market.assign(desk=["a", "b"] * (len(market) // 2)).to_csv(tmp_path / "desks.csv", index=False)
    pooled = run(drift.replace("market.csv --by regime", "desks.csv --by desk"))
    assert "By desk: each slice against the whole training profile" in pooled.stdout
    assert (
        "Note: each slice is compared with the whole (pooled) training profile: the version's "
        "per-value training profiles are by regime, not desk."
    ) in pooled.stdout


def test_a_slicing_column_the_file_lacks_is_refused_with_its_columns(tmp_path: Path) -> None:
    """--by a column the file does not have exits 2 before the registry, naming its columns."""
    generate_transactions(week=0, rows=100).to_csv(tmp_path / "now.csv", index=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = sluice(nowhere, tmp_path, "fraud-detector", "--current", "now.csv", "--by", "region")
    assert result.returncode == 2
    assert one_line(result) == (
        "sluice: error: now.csv has no column 'region' to slice by (its columns: amount, hour, "
        "card_age_days, tx_velocity_24h, merchant_category, country, is_fraud); fix --by"
    )


def test_a_slicing_column_of_many_values_is_refused(tmp_path: Path) -> None:
    """--by an identifier-like column (more than 50 values) exits 2: use a categorical one."""
    market_frame(200, seed=3).to_csv(tmp_path / "market.csv", index=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = sluice(nowhere, tmp_path, "m", "--current", "market.csv", "--by", "day")
    assert result.returncode == 2
    assert "column 'day' of market.csv has 200 distinct values" in one_line(result)
    assert "use a categorical column" in one_line(result)


# -- `--outcome NAME`: the outcome beside drift ------------------------------------------


@pytest.mark.slow
def test_the_outcome_is_reported_beside_drift_and_never_changes_the_exit_code(
    mlflow_server: MlflowService, champion: str, data: Path
) -> None:
    """The training week's inputs with every transaction marked fraud: nothing drifts (exit
    0) while the fraud rate is 100 % against training's, which the profile recorded under the
    label's name (is_fraud), so the change is shown, as a line and in the JSON."""
    frame = generate_transactions(week=0, seed=99).assign(is_fraud=1)
    frame.to_csv(data / "all_fraud.csv", index=False)
    args = ("--current", "all_fraud.csv", "--outcome", "is_fraud")
    printed = sluice(mlflow_server.tracking_uri, data, champion, *args)
    assert printed.returncode == 0, printed.stderr
    result = sluice(mlflow_server.tracking_uri, data, champion, *args, "--json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["drifted"] is False
    outcome = output["outcome"]
    assert (outcome["name"], outcome["kind"], outcome["rows"], outcome["value"]) == (
        "is_fraud", "rate", len(frame), 1.0,
    )  # fmt: skip
    assert (outcome["judged"], outcome["notes"], outcome["missing_rows"]) == (False, [], 0)
    assert 0.0 < outcome["training"] < 0.2
    assert outcome["change"] == pytest.approx(1.0 - outcome["training"])
    assert outcome["summary"] == (
        f"Outcome is_fraud, a rate (0/1), not judged: 100.0% over {len(frame):,} rows; "
        f"training {outcome['training']:.1%}, {outcome['change'] * 100:+.1f} pp"
    )
    assert outcome["summary"] in printed.stdout
    assert output["by"] is None


@pytest.mark.slow
def test_the_outcome_per_channel_has_no_training_value_without_profiles_per_channel(
    mlflow_server: MlflowService, champion: str, channels: Path
) -> None:
    """By channel, each slice's fraud rate is reported with its rows; the fraud detector logs
    no profiles per channel, so no slice gets a training value (not the pooled one) and one
    note says why; the partner slice still drifts and the exit code is drift's (1)."""
    result = sluice(
        mlflow_server.tracking_uri, channels.parent, champion,
        "--current", channels.name, "--by", "channel", "--outcome", "is_fraud", "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    output = json.loads(result.stdout)
    frame = pd.read_csv(channels)
    for part in output["by"]["slices"]:
        rows = frame[frame["channel"] == part["value"]]
        assert part["outcome"] == {
            "rows": len(rows), "value": pytest.approx(rows["is_fraud"].mean()),
            "training": None, "change": None,
        }  # fmt: skip
    assert output["outcome"]["training"] is not None
    assert output["outcome"]["notes"] == [
        "Note: no training is_fraud per channel: the version logged no training profile per "
        "channel."
    ]
    printed = sluice(
        mlflow_server.tracking_uri, channels.parent, champion,
        "--current", channels.name, "--by", "channel", "--outcome", "is_fraud",
    )  # fmt: skip
    assert printed.returncode == 1
    assert "is_fraud rate by channel: reported, not judged" in printed.stdout
    assert re.search(r"│ partner +│ +1,000 │ +[\d.]+% │ +- │ +- │", printed.stdout)


def test_an_outcome_column_the_file_lacks_or_holding_text_is_refused(tmp_path: Path) -> None:
    """--outcome a column the file does not have exits 2 before the registry, naming its
    columns; a column of text exits 2 naming a value."""
    generate_transactions(week=0, rows=100).to_csv(tmp_path / "now.csv", index=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = sluice(nowhere, tmp_path, "fraud-detector", "--current", "now.csv", "--outcome", "x")
    assert result.returncode == 2
    assert one_line(result) == (
        "sluice: error: now.csv has no column 'x' to report as the outcome (its columns: "
        "amount, hour, card_age_days, tx_velocity_24h, merchant_category, country, is_fraud); "
        "fix --outcome"
    )
    text = sluice(
        nowhere, tmp_path, "fraud-detector", "--current", "now.csv", "--outcome", "country"
    )
    assert text.returncode == 2
    assert one_line(text).startswith(
        "sluice: error: outcome column 'country' of now.csv is not numeric (100 of 100 rows, "
        "first: '"
    )
