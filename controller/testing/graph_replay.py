"""A graph's replays (:class:`~controller.ports.GraphReplay`), as a test scripts them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controller.errors import SluiceError
from controller.target_types import ReplayedAnswer

__all__ = ["MemoryGraphReplay", "ReplayCall"]

#: ``(graph, member, answers)`` of one :meth:`MemoryGraphReplay.replay`.
ReplayCall = tuple[str, str, tuple[object, ...]]


class MemoryGraphReplay:
    """A :class:`~controller.ports.GraphReplay` that answers each replayed answer with
    ``answer_fn(graph, member, answer)``: the graph's answer as the test decides it (say, the
    specialist a regime selects). Every call is recorded in :attr:`calls`; with :attr:`failure`
    set, a call raises it instead (a router that does not answer, a graph that cannot replay),
    recorded all the same."""

    def __init__(self, answer_fn: Callable[[str, str, object], ReplayedAnswer]) -> None:
        self.answer_fn = answer_fn
        self.calls: list[ReplayCall] = []
        self.failure: SluiceError | None = None

    def replay(self, graph: str, member: str, answers: Sequence[object]) -> list[ReplayedAnswer]:
        self.calls.append((graph, member, tuple(answers)))
        if self.failure is not None:
            raise self.failure
        return [self.answer_fn(graph, member, answer) for answer in answers]
