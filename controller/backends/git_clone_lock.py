"""The exclusive hold on a shared clone: a reentrant ``fcntl.flock`` on a file beside it.

Processes that share a state directory share its clone, so every operation that moves the
clone's work tree or refs holds this lock; the kernel releases it if the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from controller.errors import GitConflict

__all__ = ["LOCK_TIMEOUT_SECONDS", "CloneLock"]

#: How long an operation waits for another process's hold on the clone before giving up.
LOCK_TIMEOUT_SECONDS = 600.0


class CloneLock:
    """An exclusive lock on the clone at ``clone_path``, held through the file ``lock_path``.

    Reentrant within one object (and thread-safe: other threads wait on its mutex); other
    objects and processes on the same file wait on the ``flock``."""

    def __init__(self, lock_path: Path, clone_path: Path) -> None:
        self.lock_path = lock_path
        self._clone_path = clone_path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the clone exclusively; :class:`GitConflict` after ``timeout_seconds``."""
        with self._mutex:
            if self._depth == 0:
                self._fd = self._acquire(timeout_seconds)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None

    def _acquire(self, timeout_seconds: float) -> int:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise GitConflict(
                        f"the Git workspace {self._clone_path} stayed locked by another Sluice "
                        f"process for {timeout_seconds:.0f} s ({self.lock_path}); run again"
                    ) from None
                time.sleep(0.02)
            except BaseException:
                os.close(fd)
                raise
