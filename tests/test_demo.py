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
    demo = subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )
    try:
        stdout, stderr = demo.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the demo then stops the stack it started (it leaked before).
        demo.terminate()
        stdout, stderr = demo.communicate(timeout=60)
        pytest.fail("the demo took over 9 minutes: " + stdout[-2000:] + stderr[-2000:])
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
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


@pytest.mark.slow
def test_a_terminated_demo_stops_the_stack_it_started(tmp_path: Path) -> None:
    """SIGTERM (a CI timeout, `kill`) stops the demo's MLflow, Prometheus, Alertmanager and
    runtime too: they are started in sessions of their own, and a killed demo left them
    running."""
    demo = subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )
    assert demo.stdout is not None
    try:
        for line in demo.stdout:
            if "Stack ready" in line:
                break
        stack = json.loads((tmp_path / "local" / "stack.json").read_text())
        pids = {name: entry["pid"] for name, entry in stack.items() if entry.get("pid")}
        demo.terminate()
        output = demo.communicate(timeout=60)[0]
    finally:
        demo.kill()
    assert set(pids) == {"mlflow", "alertmanager", "prometheus", "runtime"}
    assert "Stopped runtime, prometheus, alertmanager, mlflow" in " ".join(output.split())
    assert all(_gone(pid) for pid in pids.values()), pids


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that nobody reaped (its parent, the demo, died)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status
