"""The training result as a person reads it: metrics per regime against the champion, then
the gate's checks and what happened in the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from models.market_regime.regime_metrics import LOWER_IS_BETTER, SCOPES
from models.training_report import print_gate_and_registry

if TYPE_CHECKING:
    from models.market_regime.train import TrainingResult

__all__ = ["print_result"]


def _cell(value: float | None, reference: float | None, lower_is_better: bool) -> str:
    if value is None:
        return "-"
    if reference is None:
        return f"{value:.4f}"
    delta = value - reference
    better = delta < 0 if lower_is_better else delta > 0
    colour = "green" if better else ("red" if delta else "white")
    return f"{value:.4f} [{colour}]{delta:+.4f}[/]"


def print_result(result: TrainingResult, console: Console | None = None) -> None:
    """One row per metric, one column per scope (``all`` and each regime's holdout rows);
    with a champion, each cell carries the change against it on the same rows."""
    console = console or Console()
    worse = f", worse in {result.worse_in}" if result.worse_in else ""
    against = (
        f"; deltas against champion v{result.champion_version}" if result.champion_version else ""
    )
    table = Table(
        title=f"{result.model} ({result.kind}{worse}): holdout of {result.holdout_rows['all']} "
        f"rows ({result.data}){against}"
    )
    table.add_column("metric")
    scopes = [scope for scope in SCOPES if scope in result.metrics]
    for scope in scopes:
        table.add_column(f"{scope} ({result.holdout_rows.get(scope, 0)})", justify="right")
    names = list(dict.fromkeys(n for scope in scopes for n in result.metrics[scope]))
    champion = result.champion_metrics or {}
    for name in names:
        cells = [
            _cell(
                result.metrics[scope].get(name),
                champion.get(scope, {}).get(name),
                name in LOWER_IS_BETTER,
            )
            for scope in scopes
        ]
        table.add_row(name, *cells)
    console.print(table)
    print_gate_and_registry(
        console,
        gate=result.gate,
        model=result.model,
        run_url=result.run_url,
        version=result.version,
        alias=result.alias,
    )
