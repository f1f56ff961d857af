"""``sluice feedback``: late ground truth (labels and other named outcomes) for logged requests.

The work happens in :mod:`controller.commands.feedback`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings
from controller.text.ref_names import validate_environment_name

__all__ = ["feedback"]


def feedback(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet file with request_id and label (the default outcome), or "
            "the outcome columns --outcome names (regime, up, ...); an empty cell is an "
            "outcome not arrived yet."
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Send to a running `sluice serve` at http://HOST:PORT (token: "
            "SLUICE_FEEDBACK_TOKEN) instead of writing the prediction log.",
        ),
    ] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            "--outcome",
            help="Store this column as the named outcome (repeat for more; label is the "
            "judges' default outcome). Default: label alone; other columns are never "
            "stored unless named.",
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="Write into the prediction log of ENV's routers on the local stack (default: "
            "its first environment); not with --url, whose `sluice serve` has its own.",
        ),
    ] = None,
) -> None:
    """Store late ground truth for logged requests (each outcome column's values), so shadow
    evaluation can judge champion and challenger on them."""
    from controller.commands.feedback import run_feedback

    if env is not None:
        validate_environment_name(env)
    run_feedback(current_settings(ctx), file, url=url, console=Console(), outcomes=outcome, env=env)
