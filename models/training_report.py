"""The end of a training step's printed result, shared by the example models: the quality
gate's checks, one line each, then what happened in the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console

__all__ = ["print_gate_and_registry"]


def print_gate_and_registry(
    console: Console,
    *,
    gate: Mapping[str, Any],
    model: str,
    run_url: str | None,
    version: int | None,
    alias: str | None,
) -> None:
    """Each check as pass/FAIL with its reason, the run's link, and the version registered
    (with its alias when the gate passed)."""
    for check in gate["checks"]:
        mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
        console.print(f"  {mark}  {check['reason']}")
    verdict = "passed" if gate["passed"] else "failed"
    console.print(f"Run: {run_url}")
    if version is None:
        console.print(f"Quality gate {verdict}; not registered (--no-register)")
    elif alias:
        console.print(
            f"Registered {model} version {version}: quality gate passed, alias [bold]{alias}[/] set"
        )
    else:
        console.print(
            f"Registered {model} version {version} [red]without alias[/]: "
            "quality gate failed (see FAIL above)"
        )
