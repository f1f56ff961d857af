"""The README's "Your own model" section, run as written in a fresh clone: a regressor trained
with plain MLflow calls goes through init → merge → propose → merge → rollout, twice.

As tests/test_by_hand.py does for "By hand": the commands are read from the section's first
console block, each runs through the installed CLI in a subprocess of its own, with nothing
exported but what ``eval "$(sluice local env)"`` exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.readme_blocks import ConsoleSession, console_commands

MODEL = "diabetes-regressor"


def test_the_section_onboards_before_it_proposes() -> None:
    """init, then its merge, come before the first propose; the loop runs twice."""
    commands = console_commands("## Your own model")
    init = commands.index(f"sluice init {MODEL} --env local")
    assert commands[init + 1] == f"sluice local merge {MODEL} --env local"
    assert commands.index(f"sluice propose {MODEL} --env local") > init + 1
    assert commands.count(f"sluice rollout {MODEL} --env local") == 2
    assert commands[-1] == "sluice local down"
    assert commands[0] == "sluice init --repo ../models-gitops"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_own_model_sequence_promotes_v2(tmp_path: Path) -> None:
    """Every command of the section exits 0 in a fresh clone; the regressor's V1 prediction
    answers a float per row; the second rollout promotes v2."""
    commands = console_commands("## Your own model")
    with ConsoleSession(tmp_path, "own model") as session:
        session.run_all(commands)
    outputs = session.outputs

    out = dict((command, stdout) for command, stdout, _ in outputs)  # noqa: C402
    assert (
        "Onboarded diabetes-regressor (v1: modelFormat mlflow"
        in out[f"sluice init {MODEL} --env local"]
    )
    merges = [stdout for command, stdout, _ in outputs if "local merge" in command]
    assert f"Merged sluice/local/{MODEL}/init into main" in merges[0]
    assert f"Merged sluice/local/{MODEL}/v1 into main" in merges[1]
    (prediction,) = [stdout for command, stdout, _ in outputs if command.startswith("curl")]
    values = json.loads(prediction)["predictions"]
    assert len(values) == 3
    assert all(isinstance(value, float) for value in values)
    rollouts = [stdout for command, stdout, _ in outputs if command.startswith("sluice rollout")]
    assert "v1 serves 100% of local" in rollouts[0]
    assert "champion alias → v2" in rollouts[1]
    assert "v2 serves 100% of local" in rollouts[1]
