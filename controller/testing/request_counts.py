"""The local router's live answer counts, as a test sets them."""

from __future__ import annotations

from controller.errors import RemoteUnavailable

__all__ = ["MemoryRequestCounts"]


class MemoryRequestCounts:
    """A :class:`~controller.ports.LiveRequestCounts` whose answers the test sets:
    ``counts[revision] = {code: n}``; with :attr:`outage` set it fails as a router that does
    not answer. Every question is recorded as (environment, inference service, since)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, int]] = {}
        self.outage = False
        self.asked: list[tuple[str, str, float]] = []

    def request_counts(
        self, environment: str, inference_service: str, since: float
    ) -> dict[str, dict[int, int]]:
        self.asked.append((environment, inference_service, since))
        if self.outage:
            raise RemoteUnavailable("the router at http://router.fake did not give its counts")
        return {revision: dict(codes) for revision, codes in self.counts.items()}
