"""Where the local router sends each request: the revisions of an InferenceService with their
upstreams, weights and tags, checked (percents add up to 100, one upstream per revision) and
frozen into a table that is swapped whole and read per request."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from controller.errors import ConfigError
from controller.local.mirror import parse_upstream

__all__ = ["RouteTable", "TrafficTarget"]


@dataclass(frozen=True)
class TrafficTarget:
    """A revision, where its model server listens, its share of requests and its tag."""

    revision: str
    upstream: str  # http://127.0.0.1:PORT
    percent: int
    tag: str = ""
    #: The model version the revision serves, for the prediction log.
    version: str = ""


class RouteTable:
    """An immutable routing decision: swapped whole by ``set_routes``, read per request."""

    def __init__(self, targets: Sequence[TrafficTarget]) -> None:
        weights: dict[str, int] = {}
        self.upstreams: dict[str, tuple[str, int, bytes]] = {}  # host, port, path prefix
        self.by_tag: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        for target in targets:
            if not 0 <= target.percent <= 100:
                raise ConfigError(f"traffic percent {target.percent} of {target.revision}")
            upstream = parse_upstream(target.upstream)
            self.versions[target.revision] = target.version
            if self.upstreams.setdefault(target.revision, upstream) != upstream:
                raise ConfigError(f"revision {target.revision} has two upstreams")
            weights[target.revision] = weights.get(target.revision, 0) + target.percent
            if target.tag:
                self.by_tag[target.tag] = target.revision
        total = sum(weights.values())
        if targets and total != 100:
            raise ConfigError(f"traffic percents add up to {total}, not 100")
        self.revisions = [name for name, weight in weights.items() if weight > 0]
        self.cumulative = list(itertools.accumulate(weights[name] for name in self.revisions))

    @property
    def primary(self) -> str | None:
        """The revision with the largest share (the first listed on a tie); None when nothing
        takes traffic."""
        if not self.revisions:
            return None
        shares = [b - a for a, b in zip([0, *self.cumulative], self.cumulative, strict=False)]
        return self.revisions[shares.index(max(shares))]

    def pick(self, draw: float) -> str | None:
        """The revision for a uniform ``draw`` in [0, 1); None when nothing takes traffic."""
        if not self.revisions:
            return None
        return self.revisions[bisect.bisect_right(self.cumulative, draw * self.cumulative[-1])]
