"""``sluice demo [STORY]``: the loop on the embedded local stack, narrated
(:mod:`controller.demo`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["demo"]


class Story(StrEnum):
    """The demo's stories."""

    #: The fraud detector through the whole loop (``make demo``).
    FRAUD = "fraud"
    #: The market-regime InferenceGraph and its members (``make demo-ensemble``).
    ENSEMBLE = "ensemble"
    #: The recommender through the holiday, its canaries judged on CTR
    #: (``make demo-recommender``).
    RECOMMENDER = "recommender"


def demo(
    story: Annotated[
        Story,
        typer.Argument(
            help="fraud: one model through the whole loop; ensemble: a regime-aware "
            "InferenceGraph whose members roll out on the traffic of their regime; "
            "recommender: the holiday shift, a 5 % canary judged on CTR, and a worse "
            "recommender rolled back on CTR alone."
        ),
    ] = Story.FRAUD,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Where the demo keeps its MLflow data and logs "
            "(default: .sluice/demo, .sluice/demo-ensemble, .sluice/demo-recommender)."
        ),
    ] = None,
) -> None:
    """Run the loop on the embedded local stack and narrate it."""
    from controller.local.extra import require_local_extra

    require_local_extra("sluice demo")
    if story is Story.ENSEMBLE:
        from controller.demo.ensemble import run_ensemble_demo
        from controller.local.extra import require_graph_extra

        require_graph_extra("sluice demo ensemble")
        run_ensemble_demo(workdir=workdir or Path(".sluice/demo-ensemble"), console=Console())
        return
    if story is Story.RECOMMENDER:
        from controller.demo.recommender import run_recommender_demo

        run_recommender_demo(workdir=workdir or Path(".sluice/demo-recommender"), console=Console())
        return
    from controller.demo import run_demo

    run_demo(workdir=workdir or Path(".sluice/demo"), console=Console())
