"""``sluice drift``: current data against a version's training profile.

The work happens in :mod:`controller.commands.drift`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings
from controller.errors import ExitCode

__all__ = ["drift"]


def drift(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    current: Annotated[
        Path, typer.Option("--current", help="Current data to compare: .csv or .parquet.")
    ],
    version: Annotated[
        int | None, typer.Option(help="Registry version (default: follow --alias).")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="Registry alias to resolve (default: champion).")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML report to this file."),
    ] = None,
    threshold_config: Annotated[
        Path | None,
        typer.Option(
            "--threshold-config",
            help="YAML overriding drift_share and per-feature method/threshold.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="COLUMN",
            help="Also judge each value's rows of this categorical column of --current.",
        ),
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            metavar="NAME",
            help="Also report this column of --current (0/1: a rate, else a mean) for the file "
            "and each --by slice, beside the training value; reported, not judged.",
        ),
    ] = None,
    min_slice_rows: Annotated[
        int | None,
        typer.Option(
            "--min-slice-rows",
            min=1,
            help="With --by: slices with fewer rows are reported as too few rows, not judged "
            "(default: 500).",
        ),
    ] = None,
) -> None:
    """Compare current data with a version's training profile; exit 1 when the dataset drifts
    (or, with --by, any slice does). --outcome is reported and never changes the exit code."""
    from controller.commands.drift import DriftRequest, run_drift

    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    if min_slice_rows is not None and by is None:
        raise typer.BadParameter("--min-slice-rows sizes the slices of --by: give --by COLUMN")
    result = run_drift(
        current_settings(ctx),
        DriftRequest(
            model=model, current=current, version=version, alias=alias,
            html=html, threshold_config=threshold_config, as_json=as_json,
            by=by, min_slice_rows=min_slice_rows, outcome=outcome,
        ),
        console=Console(),
    )  # fmt: skip
    if result.drifted:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
