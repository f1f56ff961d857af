"""Run a GitHub Actions job's `run:` steps locally, exactly as written, for the tests.

GitHub Actions cannot run here, so the tests run what the workflows run: every `run:` script
of a job, in order, with bash, in the repository's checkout, with the step's and the job's
`env:` after evaluating the `${{ }}` expressions the workflows use (contexts `github.event`,
`inputs`, `steps.*.outputs`, `secrets`; `||`, `==`, `!=`, `join()`), and the files GitHub
provides (`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, `$RUNNER_TEMP`). `uses:` steps are what
the test environment already is (a checkout with Python); `sudo` steps install system
packages, which the test machine has.
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

__all__ = ["JobRun", "base_environ", "evaluate", "run_job"]

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class JobRun:
    """What a job did: each step's outputs and exit code, and the step summary."""

    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
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
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    match = re.fullmatch(r"join\((.+?),\s*'(.*)'\)", text)
    if match:
        items = _lookup(match.group(1).strip(), context) or []
        return match.group(2).join(str(i) for i in items)
    return _lookup(text, context)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """A GitHub expression of the shapes the workflows use."""
    for alternative in expression.split("||"):
        alternative = alternative.strip()
        match = re.fullmatch(r"(.+?)\s*(==|!=)\s*(.+)", alternative)
        if match:
            left, right = _term(match.group(1), context), _term(match.group(3), context)
            value: Any = (str(left) == str(right)) == (match.group(2) == "==")
        else:
            value = _term(alternative, context)
        if value:
            return value
    return value


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
) -> JobRun:
    """Run ``job`` of ``workflow`` for ``event``, stopping at the first failing step."""
    spec = yaml.safe_load(workflow.read_text())["jobs"][job]
    run = JobRun()
    summary = workdir / "summary.md"
    summary.write_text("")
    context: dict[str, Any] = {
        "github": {"event": event},
        "inputs": event.get("inputs", {}),
        "secrets": dict(secrets),
        "steps": {},
    }
    job_env = {k: _render(v, context) for k, v in (spec.get("env") or {}).items()}
    for index, step in enumerate(spec["steps"]):
        name = step.get("name", f"step {index}")
        script = step.get("run")
        condition = step.get("if")
        if condition and not evaluate(condition, context):
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
            context["steps"][step["id"]] = {"outputs": outputs}
        if done.returncode != 0:
            run.failed_step = name
            break
    run.summary = summary.read_text()
    return run


def base_environ(home: Path) -> dict[str, str]:
    """A runner's plain environment: PATH and HOME, nothing from the developer's shell."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
