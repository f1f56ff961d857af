"""``sluice demo``: the loop on the embedded local stack, narrated (:mod:`controller.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["demo"]


def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its MLflow data and logs.")
    ] = Path(".sluice/demo"),
) -> None:
    """Run the loop on the embedded local stack and narrate it."""
    from controller.demo import run_demo
    from controller.local.extra import require_local_extra

    require_local_extra("sluice demo")
    run_demo(workdir=workdir, console=Console())
