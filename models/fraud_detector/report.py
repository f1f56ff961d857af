"""The training result as a person reads it: metrics against the champion, then the gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from controller.quality.quality_gate import LOWER_IS_BETTER
from models.training_report import print_gate_and_registry

if TYPE_CHECKING:
    from models.fraud_detector.train import TrainingResult

__all__ = ["print_result"]


def print_result(result: TrainingResult, console: Console | None = None) -> None:
    """Print the metrics table, the gate checks and what happened in the registry."""
    console = console or Console()
    champion = f"champion v{result.champion_version}" if result.champion_version else "champion"
    table = Table(title=f"{result.model}: holdout of {result.holdout_rows} rows ({result.data})")
    table.add_column("metric")
    table.add_column("candidate", justify="right")
    table.add_column(champion, justify="right")
    table.add_column("delta", justify="right")
    for name, value in result.metrics.items():
        reference = (result.champion_metrics or {}).get(name)
        if reference is None:
            table.add_row(name, f"{value:.4f}", "-", "-")
            continue
        delta = value - reference
        better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
        colour = "green" if better else ("red" if delta else "white")
        table.add_row(name, f"{value:.4f}", f"{reference:.4f}", f"[{colour}]{delta:+.4f}[/]")
    console.print(table)
    print_gate_and_registry(
        console,
        gate=result.gate,
        model=result.model,
        run_url=result.run_url,
        version=result.version,
        alias=result.alias,
    )
