"""``rollout.gates.kpis``: KPI checks in the policy, their schema and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from controller.cli.config import config_app
from controller.errors import ConfigError
from controller.gates.judge import JudgeConfig
from controller.gates.kpi_policy import KPI_EXAMPLES, KpiCheck, KpiPlan
from controller.manifests.environment import parse_environment
from controller.rollout.gates_config import GatesConfig

ROOT = Path(__file__).parent.parent
OVERLAY = (ROOT / "manifests/overlays/local/sluice.yaml").read_text()
CTR = (
    "{name: ctr, outcome: click, kind: rate, direction: higher, margin: 0.005, "
    "minSamples: 2000, outcomeDelay: 300}"
)


def with_kpis(lines: str) -> str:
    """The local environment with ``lines`` (YAML list items) as ``rollout.gates.kpis``."""
    assert "\n  gates:\n" in OVERLAY
    return OVERLAY.replace("\n  gates:\n", f"\n  gates:\n    kpis:\n{lines}", 1)


@pytest.mark.parametrize("example", KPI_EXAMPLES, ids=lambda e: str(e["name"]))
def test_every_schema_example_is_a_valid_check(example: dict[str, object]) -> None:
    """CTR, the fraud catch rate and revenue per request validate as written."""
    assert KpiCheck.model_validate(example).name == example["name"]


def test_the_environment_schema_documents_kpis_with_examples() -> None:
    """`sluice config schema environment` shows gates.kpis, every field described, and the
    three examples."""
    result = CliRunner().invoke(config_app, ["schema", "environment"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    kpis = schema["$defs"]["GatesConfig"]["properties"]["kpis"]
    assert "outcomeDelay" in kpis["description"]
    assert [e["name"] for e in kpis["examples"][0]] == [
        "ctr",
        "fraud-catch-rate",
        "revenue-per-request",
    ]
    check = schema["$defs"]["KpiCheck"]
    assert all(field.get("description") for field in check["properties"].values())
    assert {"outcomeDelay", "minSamples", "margin", "direction", "kind", "missing"} <= set(
        check["properties"]
    )
    assert "winsorized" in check["properties"]["kind"]["description"]


def test_an_environment_with_kpis_reads_them() -> None:
    """A CTR check in the local environment's gates is read with its fields."""
    config = parse_environment(
        with_kpis(f"      - {CTR}\n"), source="sluice.yaml", environment="local"
    )
    (ctr,) = config.rollout.gates.kpis
    assert (ctr.outcome, ctr.kind, ctr.margin, ctr.outcome_delay_seconds) == (
        "click",
        "rate",
        0.005,
        300,
    )
    assert ctr.missing == "zero"
    assert ctr.alpha is None


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            CTR.replace("margin: 0.005", "margin: 0.6"),
            "rollout.gates.kpis.0.margin: Value error, 0.6 is too wide for a rate",
        ),
        (CTR.replace("outcome: click", "outcome: Click"), "rollout.gates.kpis.0.outcome:"),
        (CTR.replace("direction: higher", "direction: up"), "rollout.gates.kpis.0.direction:"),
        (CTR.replace(", outcomeDelay: 300", ""), "rollout.gates.kpis.0.outcomeDelay: Field"),
        (CTR.replace("kind: rate", "kind: median"), "rollout.gates.kpis.0.kind:"),
    ],
)
def test_a_bad_check_is_one_line_naming_the_field(item: str, message: str) -> None:
    """Each mistake is a config error of one line that names the field as written."""
    with pytest.raises(ConfigError) as raised:
        parse_environment(with_kpis(f"      - {item}\n"), source="sluice.yaml", environment="local")
    assert f"sluice.yaml: {message}" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_checks_of_one_name_are_refused() -> None:
    """KPI names name gates, so each is unique."""
    with pytest.raises(ValidationError, match="KPI names must be unique: ctr repeated"):
        GatesConfig.model_validate({"kpis": [KPI_EXAMPLES[0], KPI_EXAMPLES[0]]})


def test_a_mean_margin_is_relative_and_may_exceed_half() -> None:
    """A mean's margin is a fraction of the primary's mean, so 0.6 is allowed there."""
    revenue = KpiCheck.model_validate(KPI_EXAMPLES[2] | {"margin": 0.6})
    assert revenue.margin == 0.6


def test_alpha_looks_and_spending_default_to_the_judges() -> None:
    """Unset, alpha, maxLooks and spending are gates.judge's and power is 0.8."""
    ctr = KpiCheck.model_validate(KPI_EXAMPLES[0])
    judge = JudgeConfig(alpha=0.1, maxLooks=3, spending="pocock")
    assert ctr.plan(judge) == KpiPlan(alpha=0.1, power=0.8, max_looks=3, spending="pocock")
    revenue = KpiCheck.model_validate(KPI_EXAMPLES[2] | {"power": 0.9, "maxLooks": 6})
    assert revenue.plan(judge) == KpiPlan(alpha=0.025, power=0.9, max_looks=6, spending="pocock")


def test_a_release_sets_its_own_kpis_over_the_environments() -> None:
    """A release's ``rollout.gates.kpis`` replaces the environment's list for that release."""
    text = with_kpis(f"      - {CTR}\n").replace(
        "    alias: challenger\n",
        "    alias: challenger\n    rollout:\n      gates:\n"
        "        kpis:\n          - {name: fraud-catch-rate, outcome: fraud_caught, kind: rate, "
        "direction: higher, margin: 0.02, outcomeDelay: 86400, missing: skip}\n",
        1,
    )
    config = parse_environment(text, source="sluice.yaml", environment="local")
    assert [k.name for k in config.rollout.gates.kpis] == ["ctr"]
    assert [k.name for k in config.policy_for("fraud-detector").gates.kpis] == ["fraud-catch-rate"]
