"""`make demo` keeps telling its story: the demo runs end to end as a user starts it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHADOW_CHECKS = ("errors", "score-shift", "agreement", "latency", "task-metric", "mcnemar")


def _body(remote: Path, subject: str) -> str:
    """The message body of the newest commit on the GitOps remote's main with this subject."""
    log = subprocess.run(
        ["git", "log", "--format=%H %s", "main"],
        cwd=remote, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    sha = next(line.split(" ", 1)[0] for line in log if line.split(" ", 1)[1] == subject)
    return subprocess.run(
        ["git", "log", "-1", "--format=%b", sha],
        cwd=remote, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def start_demo(workdir: Path, *, stderr: int) -> subprocess.Popen[str]:
    """`sluice demo` as a user starts it from the checkout, with a bare environment."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "demo", "--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(workdir)},
    )


@pytest.mark.slow
@pytest.mark.timeout(660)  # the demo is several minutes of real rollouts on a loaded machine
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """The demo serves v1, refuses a weak model, smoke-tests v2 at 0% (the default) and walks it
    through its canary steps to champion, stops a faulty v4 with the smoke before any client
    request reaches it and rolls it back, commits a shadow phase to the policy, lets week-6
    traffic raise the drift alert that retrains and proposes v5 in shadow, judges v5 on
    mirrored requests and late labels until it passes into a 10% canary, prints Git's history,
    the status, the registry and the promoted version's lineage, and leaves no process."""
    demo = start_demo(tmp_path, stderr=subprocess.PIPE)
    try:
        stdout, stderr = demo.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the demo then stops the stack it started (it leaked before).
        demo.terminate()
        stdout, stderr = demo.communicate(timeout=60)
        pytest.fail("the demo took over 10 minutes: " + stdout[-2000:] + stderr[-2000:])
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Registered fraud-detector version 1: quality gate passed" in out
    assert "Registered fraud-detector version 2: quality gate passed" in out
    assert "Registered fraud-detector version 3 without alias" in out
    assert "fraud-detector v1 → local (first deploy)" in out
    assert "served by fraud-detector-predictor-00002" in " ".join(out.split())  # 00001: unpinned
    assert out.count("fraud score") == 5
    assert "fraud-detector v2 → local (smoke, canary 10%)" in out
    canary = " ".join(out[out.index("6. Merge") : out.index("8. Before the next")].split())
    # One smoke per rollout: v2's passes and starts the canary, v4's fails at 0%.
    assert canary.count("smoke passed → canary 10%") == 1, canary
    assert canary.count("pass smoke: 0 of 50 requests to the new revision failed") == 1, canary
    assert canary.count("fail smoke: ") == 1, canary
    assert "v4 failed the smoke at 0%: no client request reached it." in canary
    assert re.search(r"Clients saw [\d,]+ client requests, 0 failed \(0\.00%\)", canary), canary
    assert "Stopped runtime, prometheus, alertmanager, mlflow" in " ".join(out.split())
    policy = out[out.index("it answers in shadow") : out.index("the inputs drift")]
    assert "+  shadow:" in policy  # the commit's diff, as the team pushed it
    chapter = out[out.index("the inputs drift") : out.index("in shadow: judged on copies")]
    drift = " ".join(chapter.split())
    assert "SluiceFeatureDrift firing" in drift
    assert "retrain fraud-detector in local" in drift
    assert "the retraining registered fraud-detector v5" in drift
    assert "proposed it: fraud-detector v5 → local (shadow)" in drift
    assert "sluice/local/fraud-detector/v5" in drift
    shadow = " ".join(out[out.index("in shadow: judged on copies") :].split())
    shadow = shadow[: shadow.index("What Git says happened")]
    assert "+ sluice.dev/phase: shadow" in shadow
    mirror = re.search(
        r"Router: (\S+) answers every client; a copy of 100% of its requests goes to (\S+) \(v5\)",
        shadow,
    )
    assert mirror, shadow
    champion, challenger = mirror.groups()
    assert champion != challenger
    # Clients got every answer from the champion's revision, none from the challenger's.
    answers = re.search(
        r"Clients sent 400 week-6 transactions in .* and got (.*?) Prediction log", shadow
    )
    assert answers, shadow
    assert answers.group(1) == f"400 answers from {champion}"
    assert "400 requests answered by both v2 and v5, none labelled yet" in shadow
    first_look = shadow[: shadow.index("The judge waits")]
    assert (
        "inconclusive shadow/task-metric: PR AUC: 0 labelled, below minLabelled 150" in first_look
    )
    # Traffic, labels and the bootstrap are seeded: the same counts on every run.
    assert "confirmed 252 of the 400 transactions (13 fraud)" in shadow
    assert "stored 252 labels" in shadow
    assert "Committed: fraud-detector v5: shadow passed, canary 10% (local)" in shadow
    report = shadow[shadow.index("the verdict report in its body") :]
    assert "[pass] shadow/task-metric: PR AUC" in report
    assert "252 labelled (13 positive) — pass" in report
    assert re.search(rf"At 10 %, 100 more client requests got .*answers from {challenger}", shadow)
    remote = tmp_path / "gitops.git"
    verdict = _body(remote, "fraud-detector v5: shadow passed, canary 10% (local)")
    for check in SHADOW_CHECKS:
        assert re.search(rf"- \[pass\] shadow/{check}: .*\d", verdict), (check, verdict)
    promoted = _body(remote, "fraud-detector v2: canary 50% → 100%, promoted (local)")
    assert "Gates:" in promoted
    assert "[pass] locust" in promoted
    smoked = _body(remote, "fraud-detector v2: smoke passed, canary 10% (local)")
    assert "- [pass] smoke: 0 of 50 requests to the new revision failed" in smoked
    stopped = _body(remote, "rollback fraud-detector v4: smoke failed, v2 serves (local)")
    assert "Stopped before any client traffic: smoke: " in stopped
    assert "v4 was at 0% and never took a client request" in stopped
    history = out[out.index("What Git says happened") :]
    for subject in (
        "fraud-detector v2: smoke passed, canary 10% (local)",
        "fraud-detector v2: canary 10% → 50% (local)",
        "fraud-detector v2: canary 50% → 100%, promoted (local)",
        "rollback fraud-detector v4: smoke failed, v2 serves (local)",
        "rollback fraud-detector v4: restore v2 (local)",
        "rollback fraud-detector v4: v2 serves alone again (local)",
        "local: a shadow phase before the first canary step",
        "fraud-detector v5 → local (shadow)",
        "fraud-detector v5: shadow passed, canary 10% (local)",
    ):
        assert subject in history
    status = out[out.index("sluice status") : out.index("Registry state")]
    assert "v2 / v5 (shadow pass)" in status  # the champion, the challenger and its verdict
    assert "v5 10%" in status
    registry = out[out.index("Registry state") :]
    rows = [line for line in registry.splitlines() if line.startswith("│ ") and line[2:3].isdigit()]
    aliases = [row.split("│")[2].strip() for row in rows]
    assert aliases == ["-", "champion", "-", "-", "challenger"]
    in_local = [row.split("│")[5].strip() for row in rows]
    assert in_local == ["-", "-", "-", "quarantined", "shadow pass"]
    # The promoted v2, as it serves after chapter 6, traced back to its data (the demo trains
    # unsigned).
    lineage = " ".join(out[out.index("$ sluice lineage fraud-detector --env local") :].split())
    assert re.search(
        r"fraud-detector v2 in local: revision fraud-detector-predictor-\d{5} ← pin [0-9a-f]{12} "
        r"← v2 ← run [0-9a-f]{12} ← code [0-9a-f]{12} ← data sha256:[0-9a-f]{12}…, "
        r"sha256:[0-9a-f]{12}… ← unsigned ✓",
        lineage,
    ), lineage
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
    demo = start_demo(tmp_path, stderr=subprocess.STDOUT)
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
