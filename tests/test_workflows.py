"""The GitHub Actions workflows lint clean, hold to least privilege, and call only what exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from schemas import ROOT

from controller.proposals.propose import ProposalResult
from models.fraud_detector.train import TrainingResult

WORKFLOWS = ROOT / ".github/workflows"
#: The release tags and commit SHAs the workflows may pin actions to.
PINS = ROOT / ".github/actions-pins.md"
BIN = Path(sys.executable).parent
#: Commands the workflows call that are being written in parallel; each is checked like the
#: others as soon as `sluice --help` lists it. rollout: `sluice rollout MODEL --env ENV
#: [--once] [--target local|kubernetes] [--json]`, the canary walk (rollout.yml).
PENDING_COMMANDS = {"rollout"}
_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([^@\s]+)@(\S+)(?:\s+#\s*(\S+))?\s*$")
_PIN_ROW = re.compile(r"^\|\s*([\w.-]+/[\w.-]+)\s*\|\s*(v[\w.]+)\s*\|\s*([0-9a-f]{40})\s*\|$")
_MAKE = re.compile(r"(?:^|[\s;&|(])make\s+([A-Za-z][\w.-]*)")
#: A command line that runs sluice (from the venv or PATH), not a message that mentions it.
_SLUICE = re.compile(r"^\s*(?:[\w./-]*/)?sluice\s+([a-z][\w-]*)([^\n|>;&]*)", re.MULTILINE)


@cache
def workflows() -> dict[str, dict[str, Any]]:
    return {
        p.name: yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted(WORKFLOWS.glob("*.yml"))
    }


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    found: dict[str, Any] = workflow.get("on", workflow.get(True))
    return found


def steps() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, job_name, step)
        for name, workflow in workflows().items()
        for job_name, job in workflow["jobs"].items()
        for step in job.get("steps", [])
    ]


def scripts() -> list[tuple[str, str]]:
    return [
        (f"{name}/{job}/{step.get('name')}", step["run"])
        for name, job, step in steps()
        if "run" in step
    ]


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_four_workflows_exist() -> None:
    """CI, training, rollout and promotion, each a workflow of its own."""
    assert set(workflows()) == {"ci.yml", "train.yml", "rollout.yml", "promote.yml"}


def test_actionlint_passes() -> None:
    """actionlint finds nothing (with shellcheck on every script when shellcheck is installed)."""
    result = run_tool(str(BIN / "actionlint"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_has_no_findings() -> None:
    """zizmor's offline audits, including the ones its auditor persona adds, find nothing."""
    result = run_tool(str(BIN / "zizmor"), "--offline", "--persona", "auditor", ".github/workflows")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_workflows_match_the_schema(schema: str) -> None:
    """check-jsonschema accepts every workflow (and every job has a timeout)."""
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    result = run_tool(str(BIN / "check-jsonschema"), "--builtin-schema", schema, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_to_a_listed_commit() -> None:
    """Each `uses:` names a full commit SHA of .github/actions-pins.md, with its tag beside it."""
    pins = {}
    for line in PINS.read_text(encoding="utf-8").splitlines():
        if match := _PIN_ROW.match(line.strip()):
            action, tag, sha = match.groups()
            pins[(action, sha)] = tag
    assert pins
    seen = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "uses:" not in line:
                continue
            match = _USES.match(line)
            assert match, f"{path.name}:{number}: cannot read {line.strip()!r}"
            action, ref, comment = match.groups()
            assert (action, ref) in pins, f"{path.name}:{number}: {action}@{ref} is not listed"
            assert comment == pins[(action, ref)], f"{path.name}:{number}: tag comment {comment}"
            seen += 1
    assert seen == sum(1 for _, _, step in steps() if "uses" in step)


@pytest.mark.parametrize("name", ["ci.yml", "train.yml", "rollout.yml", "promote.yml"])
def test_least_privilege_and_one_run_at_a_time(name: str) -> None:
    """No permission at the top, an explicit set per job, a concurrency group per job, and no
    pull_request_target."""
    workflow = workflows()[name]
    assert workflow["permissions"] == {}
    assert "pull_request_target" not in triggers(workflow)
    for job_name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}/{job_name} has no permissions"
        assert job["permissions"] in ({}, {"contents": "read"}), f"{name}/{job_name}"
        assert job["concurrency"]["group"], f"{name}/{job_name} has no concurrency group"


def test_checkouts_do_not_keep_credentials() -> None:
    """Every actions/checkout step sets persist-credentials: false."""
    checkouts = [s for _, _, s in steps() if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


def test_no_expression_is_expanded_inside_a_script() -> None:
    """Scripts read every value from the environment; `${{ }}` never reaches a shell."""
    for where, script in scripts():
        assert "${{" not in script, where


def test_secrets_are_only_the_documented_ones() -> None:
    """The workflows read MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, SLUICE_GITHUB_TOKEN,
    ARGOCD_AUTH_TOKEN, the optional SLUICE_NOTIFY_WEBHOOK_URL (the retraining report's
    notice), SLUICE_SIGNING_KEY (provenance) and SLUICE_EVIDENCE_KEY (production's approval
    evidence), and no other secret; each is in the README's table."""
    text = "".join(p.read_text(encoding="utf-8") for p in WORKFLOWS.glob("*.yml"))
    used = set(re.findall(r"secrets\.(\w+)", text))
    assert used == {
        "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "SLUICE_GITHUB_TOKEN", "ARGOCD_AUTH_TOKEN",
        "SLUICE_NOTIFY_WEBHOOK_URL", "SLUICE_SIGNING_KEY", "SLUICE_EVIDENCE_KEY",
    }  # fmt: skip
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for secret in used:
        assert f"| `{secret}` |" in readme, secret


def test_every_make_target_exists() -> None:
    """Each `make X` in a script is a target of the Makefile."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", makefile, flags=re.MULTILINE))
    called = {(where, t) for where, script in scripts() for t in _MAKE.findall(script)}
    assert {t for _, t in called} >= {"setup", "services", "lint", "test", "validate-manifests"}
    assert [(where, t) for where, t in called if t not in targets] == []


@cache
def sluice_help(*command: str) -> str:
    result = subprocess.run(
        [str(BIN / "sluice"), *command, "--help"], capture_output=True, text=True, timeout=60,
        check=True, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )  # fmt: skip
    return result.stdout


def test_every_sluice_command_and_flag_exists() -> None:
    """Each `sluice CMD --flag` in a script is a command of `sluice --help` with that flag in
    its own help (commands still being written are allowed while help does not list them)."""
    calls = [
        (where, cmd, rest) for where, script in scripts() for cmd, rest in _SLUICE.findall(script)
    ]
    assert {cmd for _, cmd, _ in calls} == {"propose", "rollout", "retrain", "evidence"}
    commands = set(re.findall(r"^│\s+([a-z][\w-]*)\s", sluice_help(), flags=re.MULTILINE))
    assert "propose" in commands
    for where, command, rest in calls:
        if command not in commands:
            assert command in PENDING_COMMANDS, f"{where}: sluice has no command {command!r}"
            continue
        help_text = sluice_help(command)
        # A command group (`sluice retrain report`): the flags are its subcommand's.
        sub = re.match(r"\s+([a-z][\w-]*)\b", rest)
        listed = set(re.findall(r"^│\s+([a-z][\w-]*)\s", help_text, flags=re.MULTILINE))
        if sub and sub.group(1) in listed:
            help_text = sluice_help(command, sub.group(1))
        for flag in re.findall(r"(--[a-z][\w-]*)", rest):
            assert re.search(rf"{flag}\b", help_text), f"{where}: sluice {command} has no {flag}"


def test_training_flags_exist() -> None:
    """The flags train.yml passes to the training module are the module's own."""
    (script,) = [s for where, s in scripts() if where.endswith("Train, validate, register")]
    flags = set(re.findall(r"(--[a-z][\w-]*)", script))
    assert flags == {"--model-name", "--week", "--since", "--json"}
    result = subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--help"], cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for flag in flags:
        assert flag in result.stdout


def test_a_drift_dispatch_trains_on_the_data_since_the_drift_began() -> None:
    """Every key of the `retrain` dispatch Sluice sends is read by train.yml; `since` is
    checked in the first step and becomes the training module's `--since` (the newest data),
    in place of `--week` (which, without a week in the payload, was week 0)."""
    from controller.domain import RetrainRequest
    from controller.retrain.forge_dispatch import dispatch_payload

    text = (WORKFLOWS / "train.yml").read_text(encoding="utf-8")
    payload = dispatch_payload(RetrainRequest("fraud-detector", "staging", ("amount",), "x"))
    for key in payload:
        assert f"github.event.client_payload.{key}" in text, key
    env = workflows()["train.yml"]["jobs"]["train"]["env"]
    assert env["SINCE"] == "${{ github.event.client_payload.since }}"
    check = step_script("train.yml", "Check the request")
    assert '"$SINCE" =~ ^[0-9]{4}-' in check
    train = step_script("train.yml", "Train, validate, register")
    assert 'if [ -n "$SINCE" ]; then data=(--since "$SINCE"); else data=(--week "$WEEK"); fi' in (
        train
    )
    assert '--model-name "$MODEL" "${data[@]}" --json' in train


def test_a_drift_retraining_reports_its_outcome_on_success_and_on_failure() -> None:
    """train.yml's last step runs `sluice retrain report` whatever happened before it
    (`always()`), only for a `retrain` dispatch that passed the request check and carries
    `requested_at` (the record sluice serve started), with every value from the environment
    and only flags the command has; the first step checks `requested_at` like `since`."""
    from support.workflow_runner import should_run

    job = workflows()["train.yml"]["jobs"]["train"]
    step = job["steps"][-1]
    assert step["name"] == "Report the retraining's outcome"
    condition = step["if"]
    assert condition.startswith("always() && ")
    assert "github.event_name == 'repository_dispatch'" in condition
    assert "steps.request.outputs.report == 'true'" in condition
    assert job["env"]["REQUESTED_AT"] == "${{ github.event.client_payload.requested_at }}"
    assert step["env"]["STATUS"] == "${{ steps.train.outputs.status }}"
    assert step["env"]["VERSION"] == "${{ steps.train.outputs.version }}"
    assert step["env"]["PROPOSED"] == "${{ steps.propose.outcome }}"
    assert [s.get("id") for s in job["steps"] if s.get("name") == "Propose the version"] == [
        "propose"
    ]
    script = step["run"]
    assert '.venv/bin/sluice retrain report "$MODEL" --env "$ENVIRONMENT" "${report[@]}"' in (
        script
    )
    assert '--run-url "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"' in (
        script
    )
    assert '--exit-code "$STATUS"' in script
    help_text = sluice_help("retrain", "report")
    for flag in set(re.findall(r"(--[a-z][\w-]*)", script)):
        assert re.search(rf"{flag}\b", help_text), flag
    check = step_script("train.yml", "Check the request")
    assert '"$REQUESTED_AT" =~ ^[0-9]{4}-' in check
    assert 'if [ -n "$REQUESTED_AT" ]; then echo "report=true" >> "$GITHUB_OUTPUT"; fi' in check

    def runs(event_name: str, report: str | None, failed: bool) -> bool:
        outputs = {"report": report} if report else {}
        context = {
            "github": {"event_name": event_name},
            "steps": {"request": {"outputs": outputs}},
            "job": {"failed": failed},
        }
        return should_run(condition, context)

    assert runs("repository_dispatch", "true", failed=False)
    assert runs("repository_dispatch", "true", failed=True)
    assert not runs("repository_dispatch", None, failed=True)  # no requested_at, or a bad one
    assert not runs("workflow_dispatch", "true", failed=False)
    assert not runs("schedule", None, failed=True)


def test_triggers() -> None:
    """Training on model changes, weekly, by hand and on a drift alert; rollouts on manifest
    changes; promotion by hand, and a review submitted (the approval's evidence); CI on pull
    requests and pushes."""
    train = triggers(workflows()["train.yml"])
    assert train["push"]["paths"] == ["models/**"]
    assert train["schedule"]
    assert set(train["workflow_dispatch"]["inputs"]) == {"model", "week", "environment"}
    assert train["repository_dispatch"]["types"] == ["retrain"]
    rollout = triggers(workflows()["rollout.yml"])
    assert rollout["push"] == {"branches": ["main"], "paths": ["manifests/overlays/**"]}
    promote = triggers(workflows()["promote.yml"])
    assert set(promote) == {"workflow_dispatch", "pull_request_review"}
    assert promote["pull_request_review"] == {"types": ["submitted"]}
    assert set(triggers(workflows()["ci.yml"])) == {"pull_request", "push"}


# The scripts themselves -----------------------------------------------------------------------


def step_script(workflow: str, name: str) -> str:
    (script,) = [s["run"] for w, _, s in steps() if w == workflow and s.get("name") == name]
    return script


def jq_program(script: str) -> str:
    """The single-quoted jq program of a script's `jq -r` call."""
    match = re.search(r"jq -r (?:--arg \w+ \"\$\w+\" )?'(.*?)'", script, flags=re.DOTALL)
    assert match, script
    return match.group(1)


def jq(program: str, value: dict[str, Any], *args: str) -> str:
    jq_binary = shutil.which("jq")
    assert jq_binary, "jq not found (GitHub's runners have it; apt-get install jq)"
    result = subprocess.run(
        [jq_binary, "-r", *args, program], input=json.dumps(value), capture_output=True,
        text=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stdout


def test_training_summary_reads_what_training_prints() -> None:
    """The step summary's metrics table comes from the fields `train --json` prints."""
    result = TrainingResult(
        model="fraud-detector", week=1, data="synthetic week 1", run_id="r1",
        run_url="http://mlflow/#/runs/r1", version=8, alias=None,
        metrics={"roc_auc": 0.912345, "pr_auc": 0.4}, champion_version=7,
        champion_metrics={"roc_auc": 0.93}, holdout_rows=5000, holdout_digest="d",
        gate={"passed": False, "checks": [
            {"metric": "roc_auc", "passed": False, "reason": "roc_auc fell 0.0177 below v7"},
            {"metric": "pr_auc", "passed": True, "reason": "ok"},
        ]},
    )  # fmt: skip
    program = jq_program(step_script("train.yml", "Summarise the training run"))
    summary = jq(program, asdict(result), "--arg", "features", "amount, hour")
    assert "## fraud-detector v8: quality gate failed" in summary
    assert "| roc_auc | 0.9123 | 0.93 |" in summary
    assert "| pr_auc | 0.4 | – |" in summary
    assert "- failed: roc_auc fell 0.0177 below v7" in summary
    assert "drift alert on: amount, hour" in summary


@pytest.mark.parametrize(
    ("workflow", "step"), [("train.yml", "Propose the version"), ("promote.yml", "Propose")]
)
def test_proposal_summary_links_the_pull_request(workflow: str, step: str) -> None:
    """The summary names the proposal and links its pull request, from `propose --json`."""
    result = ProposalResult(
        status="proposed", model="fraud-detector", environment="staging", version=8,
        previous_version=7, canary_percent=10, storage_uri="s3://m/8",
        branch="sluice/staging/fraud-detector/v8", base="main", commit="c0ffee",
        subject="fraud-detector v8 → staging (canary 10%)", diff="",
        pull_request=12, pull_request_url="https://github.com/o/r/pull/12", superseded=(11,),
    )  # fmt: skip
    summary = jq(jq_program(step_script(workflow, step)), result.as_dict())
    assert "fraud-detector v8 → staging (canary 10%)" in summary
    assert "[#12](https://github.com/o/r/pull/12)" in summary
    assert "Closed superseded pull request #11" in summary


@pytest.mark.parametrize(
    ("code", "verdict", "lines"),
    [
        (
            1,
            {"policy": True, "allowed": False, "met": ["canary in staging: verified (…)"],
             "missing": ["soak in staging: 6h of 24h"], "override": None},
            ["## Evidence: fraud-detector v7 → production: not yet", "",
             "- ✓ canary in staging: verified (…)", "- ✗ soak in staging: 6h of 24h"],
        ),
        (
            0,
            {"policy": False, "allowed": True, "met": [], "missing": []},
            ["## Evidence: production has no promotion: policy, so fraud-detector v7 needs none"],
        ),
    ],
    ids=["missing", "no-policy"],
)  # fmt: skip
def test_promote_proposes_only_the_version_whose_evidence_is_complete(
    tmp_path: Path, code: int, verdict: dict[str, Any], lines: list[str]
) -> None:
    """The evidence step, run as Actions runs it (bash -e) over a stand-in `sluice` printing
    a verdict: evidence missing fails the step (so nothing is proposed) with one line per
    piece in the summary; otherwise it hands the checked version to the Propose step."""
    sluice = tmp_path / ".venv" / "bin" / "sluice"
    sluice.parent.mkdir(parents=True)
    document = {"model": "fraud-detector", "version": 7, "environment": "production", **verdict}
    sluice.write_text(f"#!/bin/sh\necho '{json.dumps(document)}'\nexit {code}\n")
    sluice.chmod(0o755)
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    env = {
        **os.environ, "MODEL": "fraud-detector", "RUNNER_TEMP": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
    }  # fmt: skip
    result = subprocess.run(
        ["bash", "-e", "-c", step_script("promote.yml", "Check the evidence")], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert summary.read_text().splitlines() == lines
    assert output.read_text() == "version=7\n"
    propose = step_script("promote.yml", "Propose")
    assert '--version "$VERSION"' in propose
    assert "--alias" not in propose


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def manifests_repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "seed")
    return tmp_path


def changed_releases(repo: Path, before: str) -> list[dict[str, str]]:
    """Run rollout.yml's step that lists changed releases, as Actions runs it (bash -e)."""
    output = repo / "github_output"
    output.write_text("")
    env = {
        **os.environ, "BEFORE": before, "AFTER": git(repo, "rev-parse", "HEAD"),
        "ENVIRONMENTS": "staging production", "GITHUB_OUTPUT": str(output),
    }  # fmt: skip
    subprocess.run(
        ["bash", "-e", "-c", step_script("rollout.yml", "Find them")], cwd=repo, env=env,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    (line,) = output.read_text().splitlines()
    releases: list[dict[str, str]] = json.loads(line.removeprefix("releases="))
    return releases


def test_rollout_finds_the_pin_that_changed(manifests_repo: Path) -> None:
    """A pin edited in staging is one release; local's pin is no cluster's."""
    before = git(manifests_repo, "rev-parse", "HEAD")
    for environment in ("staging", "local"):
        pin = manifests_repo / f"manifests/overlays/{environment}/fraud-detector.yaml"
        pin.write_text(
            pin.read_text().replace("name: mlflow", "name: mlflow\n        version: '2'")
        )
    git(manifests_repo, "commit", "-q", "-am", "fraud-detector v8 → staging")
    assert changed_releases(manifests_repo, before) == [
        {"model": "fraud-detector", "environment": "staging"}
    ]


def test_rollout_counts_an_overlay_change_for_every_pin(manifests_repo: Path) -> None:
    """A changed kustomization.yaml rolls out each release of its environment; an unknown
    `before` (a new branch) falls back to the pushed commit's parent."""
    kustomization = manifests_repo / "manifests/overlays/production/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "# reviewed\n")
    git(manifests_repo, "commit", "-q", "-am", "production: comment")
    assert changed_releases(manifests_repo, "0" * 40) == [
        {"model": "fraud-detector", "environment": "production"}
    ]


def test_an_approving_review_of_a_production_proposal_records_its_approval() -> None:
    """promote.yml's record-approval job runs for an approving review of a pull request from
    this repository's sluice/production/* branch only (the promote job on a dispatch only),
    and runs `sluice evidence record-approval` with the pull request's number from the
    environment, production's evidence key, and only flags the command has."""
    from support.workflow_runner import should_run

    jobs = workflows()["promote.yml"]["jobs"]
    job = jobs["record-approval"]

    def runs(condition: str, event: str = "pull_request_review", **fields: str) -> bool:
        review = {"state": fields.get("state", "approved")}
        head = {
            "ref": fields.get("ref", "sluice/production/fraud-detector/v7"),
            "repo": {"full_name": fields.get("repo", "acme/gitops")},
        }
        context = {
            "github": {
                "event_name": event, "repository": "acme/gitops",
                "event": {"review": review, "pull_request": {"number": 12, "head": head}},
            },
        }  # fmt: skip
        return should_run(condition, context)

    assert runs(job["if"])
    assert not runs(job["if"], state="commented")
    assert not runs(job["if"], state="changes_requested")
    assert not runs(job["if"], ref="sluice/staging/fraud-detector/v7")
    assert not runs(job["if"], ref="feature/production-tweaks")
    assert not runs(job["if"], repo="someone/fork")
    assert not runs(job["if"], event="workflow_dispatch")
    assert runs(jobs["promote"]["if"], event="workflow_dispatch")
    assert not runs(jobs["promote"]["if"])
    assert job["env"]["PULL_REQUEST"] == "${{ github.event.pull_request.number }}"
    (step,) = [s for s in job["steps"] if s.get("name") == "Record the approval"]
    assert step["env"]["SLUICE_EVIDENCE_KEY"] == "${{ secrets.SLUICE_EVIDENCE_KEY }}"
    script = step["run"]
    assert (
        '.venv/bin/sluice evidence record-approval --env production --pr "$PULL_REQUEST"' in script
    )
    help_text = sluice_help("evidence", "record-approval")
    for flag in set(re.findall(r"(--[a-z][\w-]*)", script)):
        assert re.search(rf"{flag}\b", help_text), flag
