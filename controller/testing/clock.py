"""A clock a test moves: time passes only when told, so no test waits for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ManualClock"]


@dataclass
class ManualClock:
    """A clock that moves only when told (``Reconciler.clock``, ``Analyzer.sleep``).

    ``on_change`` is called with the new time after every move, for whatever must follow the
    clock (a test points git's commit dates at it, so commit times and the clock agree).
    """

    now: float
    on_change: Callable[[float], None] = lambda _: None

    def __post_init__(self) -> None:
        self.on_change(self.now)

    def __call__(self) -> float:
        """The current time, in seconds since the epoch."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += max(0.0, seconds)
        self.on_change(self.now)

    def sleep(self, seconds: float) -> None:
        """Sleep as ``time.sleep`` would, without waiting."""
        self.advance(seconds)
