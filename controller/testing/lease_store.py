"""Leases in a dict, with the compare-and-swap the Git and Kubernetes stores get remotely."""

from __future__ import annotations

import threading

from controller.lease import Lease

__all__ = ["MemoryLeaseStore"]


class MemoryLeaseStore:
    """A :class:`~controller.ports.LeaseStore` in memory, shared by the controllers of a test
    (thread-safe); every swap is recorded, in order, as (name, holder or None)."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[Lease, str]] = {}
        self._versions = 0
        self._lock = threading.Lock()
        self.swaps: list[tuple[str, str | None]] = []

    def read(self, name: str) -> tuple[Lease, str] | None:
        with self._lock:
            return self._records.get(name)

    def swap(self, name: str, expected: str | None, lease: Lease | None) -> bool:
        with self._lock:
            current = self._records.get(name)
            if (current[1] if current else None) != expected:
                return False
            if lease is None:
                self._records.pop(name, None)
            else:
                self._versions += 1
                self._records[name] = (lease, str(self._versions))
            self.swaps.append((name, lease.holder if lease else None))
            return True
