"""`make demo` keeps telling its story: the demo runs end to end as a user starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)  # the demo is several minutes of real rollouts on a loaded machine
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """The demo serves v1, refuses a weak model, walks v2 through its canary steps to champion,
    rolls a faulty v4 back, lets week-6 traffic raise the drift alert that retrains and proposes
    v5, prints Git's history and the registry, and leaves no process."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Registered fraud-detector version 1: quality gate passed" in out
    assert "Registered fraud-detector version 2: quality gate passed" in out
    assert "Registered fraud-detector version 3 without alias" in out
    assert "fraud-detector v1 → local (first deploy)" in out
    assert "served by fraud-detector-predictor-00001" in " ".join(out.split())
    assert out.count("fraud score") == 5
    assert "fraud-detector v2 → local (canary 10%)" in out
    assert "Stopped runtime, prometheus, alertmanager, mlflow" in " ".join(out.split())
    chapter = out[out.index("the inputs drift") : out.index("What Git says happened")]
    drift = " ".join(chapter.split())
    assert "SluiceFeatureDrift firing" in drift
    assert "retrain fraud-detector in local" in drift
    assert "the retraining registered fraud-detector v5" in drift
    assert "proposed it: fraud-detector v5 → local" in drift
    assert "sluice/local/fraud-detector/v5" in drift
    history = out[out.index("What Git says happened") :]
    for subject in (
        "fraud-detector v2: canary 10% → 50% (local)",
        "fraud-detector v2: canary 50% → 100%, promoted (local)",
        "rollback fraud-detector v4: all traffic back to v2 (local)",
        "rollback fraud-detector v4: restore v2 (local)",
        "rollback fraud-detector v4: v2 serves alone again (local)",
    ):
        assert subject in history
    status = out[out.index("sluice status") : out.index("Registry state")]
    assert "v2 / v5" in status  # the champion and the retrained challenger
    registry = out[out.index("Registry state") :]
    rows = [line for line in registry.splitlines() if line.startswith("│ ") and line[2:3].isdigit()]
    aliases = [row.split("│")[2].strip() for row in rows]
    assert aliases == ["-", "champion", "-", "-", "challenger"]
    stack = json.loads((tmp_path / "local" / "stack.json").read_text())
    for component in stack.values():
        if component.get("pid"):
            with pytest.raises(ProcessLookupError):
                os.kill(component["pid"], 0)
