"""The README's "Your own model" section, run as written in a fresh clone: a regressor trained
with plain MLflow calls goes through init → merge → propose → merge → rollout, twice.

As tests/test_by_hand.py does for "By hand": the commands are read from the section's first
console block, each runs through the installed CLI in a subprocess of its own, with nothing
exported but what ``eval "$(sluice local env)"`` exports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.local_env import EVAL_ENV, exports

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "diabetes-regressor"


def own_model_commands(readme: str) -> list[str]:
    """The ``$`` lines of the first console block of the "Your own model" section."""
    section = readme.split("\n## Your own model", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, "the Your own model section has no console block"
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def test_the_section_onboards_before_it_proposes() -> None:
    """init, then its merge, come before the first propose; the loop runs twice."""
    commands = own_model_commands((ROOT / "README.md").read_text(encoding="utf-8"))
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
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "120"}
    commands = own_model_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    outputs: list[tuple[str, str, float]] = []
    started = time.monotonic()
    try:
        for command in commands:
            begun = time.monotonic()
            shell = "sluice local env" if command == EVAL_ENV else command
            done = subprocess.run(
                ["bash", "-c", shell], cwd=checkout, env=env,
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            outputs.append((command, done.stdout, time.monotonic() - begun))
            assert done.returncode == 0, (
                f"$ {command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            if command == EVAL_ENV:
                env.update(exports(done.stdout))
    finally:
        subprocess.run(
            [str(BIN / "sluice"), "local", "down"], cwd=checkout, env=env,
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        timings = ", ".join(
            f"{command.split(' --')[0]} {took:.1f}s" for command, _, took in outputs
        )
        print(f"\nown model: {time.monotonic() - started:.1f} s in all: {timings}")

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
