"""Run a GitHub Actions job's `run:` steps locally, exactly as written, for the tests.

GitHub Actions cannot run here, so the tests run what the workflows run: every `run:` script
of a job, in order, with bash, in the repository's checkout, with the step's and the job's
`env:` after evaluating the `${{ }}` expressions the workflows use (contexts `github.event`,
`github.event_name`, `inputs`, `steps.*.outputs`, `steps.*.outcome`, `secrets`; `||`, `&&`,
`==`, `!=`, `join()`, `startsWith()`, and the status functions `always()`, `success()`,
`failure()`), and the files GitHub provides (`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`,
`$RUNNER_TEMP`). As on GitHub, once a step fails the job runs only the steps whose `if:` calls
a status function that lets them (`always()`, `failure()`); a condition without one means
`success() && ...`. `uses:` steps are what the test environment already is (a checkout with
Python); `sudo` steps install system packages, which the test machine has.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["JobRun", "base_environ", "evaluate", "run_job", "should_run"]

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_STATUS_FUNCTION = re.compile(r"\b(always|success|failure|cancelled)\(\)")


@dataclass
class JobRun:
    """What a job did: each step's outputs and exit code, and the step summary."""

    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    #: The first step that failed (the job failed); later `if: always()` steps still ran.
    failed_step: str | None = None


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _term(text: str, context: Mapping[str, Any]) -> Any:
    text = text.strip()
    status = _STATUS_FUNCTION.fullmatch(text)
    if status:
        failed = bool(context.get("job", {}).get("failed"))
        return {"always": True, "success": not failed, "failure": failed}.get(status.group(1))
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    match = re.fullmatch(r"startsWith\((.+?),\s*'(.*)'\)", text)
    if match:  # GitHub's startsWith ignores case
        found = _lookup(match.group(1).strip(), context)
        return str(found or "").lower().startswith(match.group(2).lower())
    match = re.fullmatch(r"join\((.+?),\s*'(.*)'\)", text)
    if match:
        items = _lookup(match.group(1).strip(), context) or []
        return match.group(2).join(str(i) for i in items)
    return _lookup(text, context)


def _comparison(text: str, context: Mapping[str, Any]) -> Any:
    match = re.fullmatch(r"(.+?)\s*(==|!=)\s*(.+)", text.strip())
    if match:
        left, right = _term(match.group(1), context), _term(match.group(3), context)
        # GitHub compares a missing value (null) equal to '' (both coerce to 0).
        left, right = ("" if left is None else left), ("" if right is None else right)
        return (str(left) == str(right)) == (match.group(2) == "==")
    return _term(text, context)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """A GitHub expression of the shapes the workflows use (no parentheses: `&&` binds
    tighter than `||`, as in GitHub's grammar)."""
    value: Any = None
    for alternative in expression.split("||"):
        for operand in alternative.split("&&"):
            value = _comparison(operand, context)
            if not value:
                break
        if value:
            return value
    return value


def should_run(condition: str | None, context: Mapping[str, Any]) -> bool:
    """Whether a step with ``if: condition`` runs: with no status function in it, only while
    no step has failed (GitHub's implicit ``success() &&``)."""
    failed = bool(context.get("job", {}).get("failed"))
    if not condition:
        return not failed
    if not _STATUS_FUNCTION.search(condition) and failed:
        return False
    return bool(evaluate(condition, context))


def _render(text: str, context: Mapping[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        value = evaluate(match.group(1), context)
        return "" if value is None or value is False else str(value)

    return _EXPR.sub(one, str(text))


def _read_outputs(path: Path) -> dict[str, str]:
    outputs = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            outputs[key] = value
    return outputs


def run_job(
    workflow: Path,
    job: str,
    *,
    event: Mapping[str, Any],
    secrets: Mapping[str, str],
    cwd: Path,
    workdir: Path,
    environ: Mapping[str, str],
    event_name: str | None = None,
) -> JobRun:
    """Run ``job`` of ``workflow`` for ``event`` (named ``event_name``; by default the one its
    shape says: ``client_payload`` a repository_dispatch, ``inputs`` a workflow_dispatch);
    after a failing step only the steps whose condition asks for it run."""
    if event_name is None:
        event_name = (
            "repository_dispatch"
            if "client_payload" in event
            else "workflow_dispatch"
            if "inputs" in event
            else "push"
        )
    spec = yaml.safe_load(workflow.read_text())["jobs"][job]
    run = JobRun()
    summary = workdir / "summary.md"
    summary.write_text("")
    context: dict[str, Any] = {
        "github": {"event": event, "event_name": event_name},
        "job": {"failed": False},
        "inputs": event.get("inputs", {}),
        "secrets": dict(secrets),
        "steps": {},
    }
    job_env = {k: _render(v, context) for k, v in (spec.get("env") or {}).items()}
    for index, step in enumerate(spec["steps"]):
        name = step.get("name", f"step {index}")
        script = step.get("run")
        condition = step.get("if")
        if not should_run(condition, context):
            if "id" in step:
                context["steps"][step["id"]] = {"outputs": {}, "outcome": "skipped"}
            continue
        if script is None or str(script).startswith("sudo "):
            continue
        output = workdir / f"output-{index}"
        output.write_text("")
        env = {
            **environ,
            **job_env,
            **{k: _render(v, context) for k, v in (step.get("env") or {}).items()},
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(workdir),
        }
        done = subprocess.run(
            ["bash", "-e", "-c", _render(script, context)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        run.codes[name] = done.returncode
        run.logs[name] = done.stdout + done.stderr
        outputs = _read_outputs(output)
        run.outputs[name] = outputs
        if "id" in step:
            outcome = "success" if done.returncode == 0 else "failure"
            context["steps"][step["id"]] = {"outputs": outputs, "outcome": outcome}
        if done.returncode != 0 and run.failed_step is None:
            run.failed_step = name
            context["job"]["failed"] = True
    run.summary = summary.read_text()
    return run


def base_environ(home: Path) -> dict[str, str]:
    """A runner's plain environment: PATH and HOME, nothing from the developer's shell."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
