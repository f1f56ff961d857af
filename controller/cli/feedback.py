"""``sluice feedback``: late ground-truth labels for logged requests.

The work happens in :mod:`controller.commands.feedback`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings

__all__ = ["feedback"]


def feedback(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet file with columns request_id and label.")
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Send to a running `sluice serve` at http://HOST:PORT (token: "
            "SLUICE_FEEDBACK_TOKEN) instead of writing the prediction log.",
        ),
    ] = None,
) -> None:
    """Store late ground-truth labels for logged requests, so shadow evaluation can judge
    champion and challenger on them."""
    from controller.commands.feedback import run_feedback

    run_feedback(current_settings(ctx), file, url=url, console=Console())
