"""One long-lived ``git cat-file --batch``: objects read over a pipe, not a process each.

Starting ``git`` costs several milliseconds of CPU; answering one more line on a running
``cat-file --batch`` costs microseconds. The process is started at the first read, asked one
object at a time (so neither side can fill a pipe while the other waits), and replaced when
it has died, when the reader is used from a forked child, or when a read was interrupted
halfway (its unread answer would be taken for the next one). Objects a fetch adds later are
found: ``cat-file`` looks for new packs when an object is not where it looked. It exits when
the reader is closed or collected, or with the interpreter.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import weakref
from pathlib import Path
from typing import IO

__all__ = ["ObjectReader"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End ``cat-file`` (it exits at the end of its input) and reap it."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ObjectReader:
    """Objects of the repository at ``git_dir`` by name (``<commit>:<path>``, a sha), from one
    ``git cat-file --batch`` process run in ``work_tree`` (where a ``<commit>:./path`` is
    relative to, as for GitPython's commands); safe to share between threads."""

    def __init__(self, git_dir: Path, work_tree: Path | None = None) -> None:
        self.git_dir = git_dir
        self.work_tree = work_tree
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._finalizer: weakref.finalize[..., ObjectReader] | None = None

    def read(self, names: list[str]) -> list[tuple[str, bytes] | None]:
        """``(type, content)`` of each named object, None for one that does not exist."""
        for name in names:
            if "\n" in name:
                raise ValueError(f"object name {name!r} contains a line feed")
        with self._lock:
            try:
                return [self._read_one(name) for name in names]
            except OSError:  # it died: once more, on a new one
                self._discard()
            except BaseException:
                self._discard()  # a half-read answer would be taken for the next one
                raise
            try:
                return [self._read_one(name) for name in names]
            except BaseException:
                self._discard()
                raise

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        if self._finalizer is not None:
            if self._pid == os.getpid():
                self._finalizer()
            else:
                self._finalizer.detach()  # the parent's process: it ends it, not its child
        self._process, self._finalizer = None, None

    def _running(self) -> tuple[IO[bytes], IO[bytes]]:
        process = self._process
        if process is None or self._pid != os.getpid() or process.poll() is not None:
            self._discard()
            process = subprocess.Popen(
                ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.work_tree,
            )
            self._process, self._pid = process, os.getpid()
            self._finalizer = weakref.finalize(self, _stop, process)
        assert process.stdin is not None
        assert process.stdout is not None
        return process.stdin, process.stdout

    def _read_one(self, name: str) -> tuple[str, bytes] | None:
        stdin, stdout = self._running()
        stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        stdin.flush()
        header = stdout.readline()
        if not header:
            raise OSError(f"git cat-file in {self.git_dir} ended unexpectedly")
        fields = header.split()
        if len(fields) != 3:  # "<name> missing" or "<name> ambiguous"
            return None
        size = int(fields[2])
        content = stdout.read(size)
        stdout.read(1)  # the newline after each object
        if len(content) != size:
            raise OSError(f"git cat-file in {self.git_dir} ended unexpectedly")
        return fields[1].decode("ascii"), content
