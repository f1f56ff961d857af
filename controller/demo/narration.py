"""What every demo story does the same way: a stack it stops whatever happens, a training step
run as CI runs it, and a proposal shown as ``sluice propose`` prints it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.syntax import Syntax

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import GateFailed
from controller.local.stack import down
from controller.local.state import read_json
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, ProposalResult, propose

__all__ = [
    "narrated_proposal",
    "narrated_training",
    "runtime_entry",
    "stopped_at_exit",
    "traffic_split",
]


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def stopped_at_exit(console: Console, root: Path, workdir: Path) -> Iterator[None]:
    """Stop the stack under ``root`` when the block ends, however it ends. The stack's
    processes outlive this one by design (``sluice local up``); a demo stopped with SIGTERM
    must still stop them, so SIGTERM unwinds like Ctrl-C, through this block's exit."""
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        stopped = down(root)
        signal.signal(signal.SIGTERM, previous)
        console.print(
            f"Stopped {', '.join(stopped) or 'nothing'}; the demo's data stays in {workdir}."
        )


def narrated_training(
    console: Console, tracking_uri: str, module: str, args: list[str], *, expect_exit: int
) -> None:
    """``python -m MODULE ARGS`` as the training workflow runs it, its output on the console;
    :class:`GateFailed` unless it exits ``expect_exit`` (1: the quality gate refused it)."""
    console.print(f"[dim]$ python -m {module} {' '.join(args)}[/]")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "COLUMNS": str(console.width)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", module, *args], env=env, check=False)
    console.print(f"[dim]({time.monotonic() - started:.1f} s, exit {result.returncode})[/]")
    if result.returncode != expect_exit:
        raise GateFailed(
            f"demo: training {' '.join(args)} exited {result.returncode}, expected "
            f"{expect_exit}; see its output above"
        )


def narrated_proposal(
    console: Console,
    tracking_uri: str,
    remote: Path,
    cache: Path,
    request: ProposalRequest,
    *,
    show_diff: bool = True,
) -> ProposalResult:
    """``sluice propose`` against the demo's remote (no forge: the demo merges by hand)."""
    flag = f" --version {request.version}" if request.version is not None else ""
    console.print(f"[dim]$ sluice propose {request.model} --env {request.environment}{flag}[/]")
    result = propose(
        request,
        registry=MlflowRegistry(tracking_uri),
        workspace=GitWorkspace(str(remote), cache),
        forge=NoForge(),
    )
    console.print(f"Proposed: [bold]{result.subject}[/] on branch {result.branch}")
    if show_diff:
        console.print(
            Syntax(
                result.diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True
            )
        )
    return result


def runtime_entry(root: Path, kind: str, name: str) -> dict[str, Any]:
    """What the local runtime under ``root`` saved of one object (``kind``:
    ``inferenceServices`` or ``inferenceGraphs``); empty while it has none."""
    entries = (read_json(root / "runtime.json") or {}).get(kind) or {}
    return dict(entries.get(name) or {})


def traffic_split(root: Path, model: str) -> dict[str, int]:
    """The InferenceService ``model``'s traffic per revision, as its status reports it."""
    status = runtime_entry(root, "inferenceServices", model).get("object", {}).get("status") or {}
    traffic = (status.get("components") or {}).get("predictor", {}).get("traffic") or []
    return {str(t.get("revisionName")): int(t.get("percent") or 0) for t in traffic}
