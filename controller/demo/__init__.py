"""``sluice demo``: the loop on the embedded local stack, told as a timeline of chapters.

``run`` tells the whole story and starts each chapter: ``rollout_chapter`` (client traffic and
``sluice rollout`` narrated pass by pass), ``shadow_chapter`` (the challenger answers copies of
live requests first) and ``drift_chapter`` (a shifted week, the alert, one retraining).
``gitops_remote`` seeds the demo's own GitOps remote and merges as a person does; ``sluice local
up`` seeds its remote with it too.

``run_demo`` is loaded on first use: ``sluice local up`` imports ``gitops_remote`` through this
package and must not pay for the registry client and the rollout machinery that ``run`` imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.demo.run import run_demo

__all__ = ["run_demo"]


def __getattr__(name: str) -> object:
    if name == "run_demo":
        from controller.demo.run import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
