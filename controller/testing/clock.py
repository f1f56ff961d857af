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
    ``tick`` moves it that much at every reading (a request timed by two readings lasts one).
    """

    now: float
    on_change: Callable[[float], None] = lambda _: None
    tick: float = 0.0

    def __post_init__(self) -> None:
        self.on_change(self.now)

    def __call__(self) -> float:
        """The current time, in seconds since the epoch (after ``tick`` more)."""
        if self.tick:
            self.advance(self.tick)
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += max(0.0, seconds)
        self.on_change(self.now)

    def sleep(self, seconds: float) -> None:
        """Sleep as ``time.sleep`` would, without waiting."""
        self.advance(seconds)
