"""The README's "By hand" section, run as written in a fresh clone: the local loop promotes v2.

The commands are read from the README's first console block under "## By hand", so the
section and this test cannot drift apart; each runs through the installed CLI in a subprocess
of its own, in a clone of the committed repository, with the defaults and nothing exported but
what ``eval "$(sluice local env)"`` exports (parsed here as the shell would).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.local_env import EVAL_ENV
from support.readme_blocks import ConsoleSession, console_commands

#: The loop the section must keep, in order (other commands may sit between these).
LOOP = [
    "sluice local up",
    EVAL_ENV,
    "python -m models.fraud_detector.train --week 0",
    "sluice propose fraud-detector --env local",
    "sluice local merge fraud-detector --env local",
    "sluice rollout fraud-detector --env local",
    "python -m models.fraud_detector.train --week 1",
    "sluice propose fraud-detector --env local",
    "sluice local merge fraud-detector --env local",
    "sluice rollout fraud-detector --env local",
    "sluice local down",
]


def fetch(url: str) -> str:
    """GET the page as a browser would, straight to 127.0.0.1 (no proxy); its HTML."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        return str(response.read().decode())


def release_row(page: str, env: str, model: str) -> list[str]:
    """The cells of the release's row in the page's summary table, as a user reads them."""
    link = f'<a href="#{env}-{model}">{model}</a>'
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", page) if link in r)
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", row)]


def test_the_section_keeps_the_loop() -> None:
    """The README's sequence is the loop, in order: up, env, train, propose, merge, roll out,
    twice, down."""
    commands = iter(console_commands("## By hand"))
    missing = [step for step in LOOP if not any(command == step for command in commands)]
    assert not missing, f"the README's By hand block lost {missing}"


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_by_hand_sequence_promotes_v2(tmp_path: Path) -> None:
    """Every command of the section exits 0 in a fresh clone; both curl predictions answer;
    each merge prints the merge commit now on main; the second rollout promotes v2; the status
    page `local up` prints shows the release before v1 and with v2 serving after the rollout;
    `local down` leaves nothing running, the page included."""
    commands = console_commands("## By hand")
    pages: list[tuple[str, str]] = []  # (after which command, the page's HTML)
    page_url = ""
    with ConsoleSession(tmp_path, "by hand") as session:
        for command, stdout in session.run(commands):
            if command == "sluice local up":
                found = re.search(r"^  Status page +(http://127\.0\.0\.1:\d+/)$", stdout, re.M)
                assert found, stdout
                page_url = found.group(1)
            if command == "sluice local up" or command.startswith("sluice rollout fraud"):
                pages.append((command, fetch(page_url)))
    checkout, env, outputs = session.checkout, session.env, session.outputs

    out = {command: stdout for command, stdout, _ in outputs}  # the last of repeated commands
    ran = [command for command, _, _ in outputs]
    assert "MLflow         http://127.0.0.1:" in outputs[0][1]
    assert "Prometheus UI  http://127.0.0.1:" in outputs[0][1]
    assert "Alertmanager   http://127.0.0.1:" in outputs[0][1]
    # The README's sample output shows the same rows: the page is the stack's own, and
    # Alertmanager still posts drift alerts to `sluice serve`'s hook.
    assert (
        "(drift alerts go to `sluice serve --env local`: http://127.0.0.1:8686/hooks/alertmanager)"
        in outputs[0][1]
    )
    assert re.search(
        r"^status-page   ready in [\d.]+ s: " + re.escape(page_url) + "$", outputs[0][1], re.M
    )
    assert set(env) >= {"MLFLOW_TRACKING_URI", "SLUICE_GIT_REMOTE", "SLUICE_STATE_DIR"}
    remote = Path(env["SLUICE_GIT_REMOTE"])
    assert remote == (checkout / ".sluice" / "local" / "gitops.git").resolve()
    merges = [
        stdout.split()[-1]
        for command, stdout, _ in outputs
        if "local merge fraud-detector" in command
    ]
    assert len(merges) == 2
    log = subprocess.run(
        ["git", "log", "--first-parent", "--format=%H %P", "main"],
        cwd=remote, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for sha in merges:  # a merge commit (two parents) on main's first-parent line
        line = next(row for row in log.splitlines() if row.startswith(sha))
        assert len(line.split()) == 3, line
    predictions = [stdout for command, stdout, _ in outputs if command.startswith("curl")]
    assert len(json.loads(predictions[0])["predictions"]) == 3
    assert json.loads(predictions[1])["outputs"][0]["shape"] == [3, 2]
    rollouts = [
        stdout for command, stdout, _ in outputs if command.startswith("sluice rollout fraud")
    ]
    assert "v1 serves 100% of local" in rollouts[0]
    assert "champion alias → v2" in rollouts[1]
    assert "v2 serves 100% of local" in rollouts[1]
    assert ran[-1] == "sluice local down"
    stopped = "stopped: status-page, runtime, prometheus, alertmanager, mlflow"
    assert stopped in out["sluice local down"]
    with pytest.raises(urllib.error.URLError):  # refused: nothing listens there any more
        fetch(page_url)
    # What a user sees on the page: the release before anything is pinned, then each rollout.
    assert [command for command, _ in pages] == [
        "sluice local up", "sluice rollout fraud-detector --env local",
        "sluice rollout fraud-detector --env local",
    ]  # fmt: skip
    (_, before), (_, first), (_, second) = pages
    assert "<h1>sluice status</h1>" in before
    assert release_row(before, "local", "fraud-detector")[:3] == ["local", "fraud-detector", "-"]
    assert "nothing is pinned: run `sluice propose fraud-detector --env local`" in before
    assert release_row(first, "local", "fraud-detector")[:3] == ["local", "fraud-detector", "v1"]
    row = release_row(second, "local", "fraud-detector")
    assert row[:4] == ["local", "fraud-detector", "v2", "-"], row  # serving v2, no canary left
    assert 'data-model="fraud-detector" data-environment="local"' in second
