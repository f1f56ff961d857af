"""The router's live request counts: one-second buckets, read from a second on."""

from __future__ import annotations

from controller.local.request_window import RequestWindow
from controller.testing import ManualClock


def test_counts_from_the_second_holding_since() -> None:
    clock = ManualClock(1000.2)
    window = RequestWindow(clock=clock)
    window.observe("r1", 200)
    clock.advance(1.0)  # 1001.2
    window.observe("r1", 200)
    window.observe("r2", 500)
    window.observe("r2", 200)
    clock.advance(1.0)  # 1002.2
    window.observe("r2", 500)
    assert window.since(1001.9) == {"r1": {200: 1}, "r2": {500: 2, 200: 1}}
    assert window.since(1000.0) == {"r1": {200: 2}, "r2": {500: 2, 200: 1}}
    assert window.since(1002.0) == {"r2": {500: 1}}
    assert window.since(1003.0) == {}


def test_buckets_older_than_the_retention_are_dropped() -> None:
    clock = ManualClock(0.0)
    window = RequestWindow(retention_seconds=10, clock=clock)
    for _ in range(30):
        window.observe("r1", 200)
        clock.advance(1.0)
    # Seconds 0..29 were observed; only the last ten and the one starting the horizon remain.
    assert window.since(0.0) == {"r1": {200: 11}}
    assert window.since(25.0) == {"r1": {200: 5}}
