"""What a clone's last sync saw, read once: the remote's refs, and files and history at a commit.

A rollout pass asks the same questions many times between two fetches (the tip of a branch,
the default branch, the environment file, the pin, the pin's last change), and each used to
start a ``git`` process: about eight per pass, ten milliseconds of CPU each. Their answers
change only when the clone's remote-tracking refs do, so:

- the refs are read with one ``git for-each-ref`` at the first question after a sync, fetch
  or push, and :meth:`SyncedReads.forget_refs` drops them whenever one of those may have
  moved a ref (the workspace calls it; another process sharing the clone moves the refs only
  by its own fetch or push, which this snapshot ignores until its own next sync, exactly the
  "as of the last sync" a caller is promised);
- a file at a commit and the commits that changed a path up to a commit never change (a
  commit names its whole tree and history), so they are kept by commit sha, a bounded number
  of them, and read through one long-lived ``git cat-file --batch``
  (:class:`~controller.backends.git_object_reader.ObjectReader`) instead of a process each.
"""

from __future__ import annotations

import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from controller.backends.git_object_reader import ObjectReader

__all__ = ["RemoteRefs", "SyncedReads", "read_remote_refs"]

_T = TypeVar("_T")

#: Files and histories kept per workspace (a pass over 1,000 pins reads each once per tip),
#: and the bytes of the files at most.
_KEPT = 8192
_KEPT_BYTES = 64 * 1024 * 1024
_ORIGIN = "refs/remotes/origin/"


@dataclass(frozen=True)
class RemoteRefs:
    """The clone's ``refs/remotes/origin/*``: each branch's tip, and the branch
    ``origin/HEAD`` names (None when it names none that exists)."""

    tips: dict[str, str]
    head: str | None


def read_remote_refs(git_dir: Path) -> RemoteRefs | None:
    """Every remote-tracking ref of ``origin`` in one ``git for-each-ref`` (None: git failed,
    as on a clone a killed ``git clone`` left half made)."""
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "for-each-ref",
         "--format=%(refname)%00%(objectname)%00%(symref)", _ORIGIN],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    tips: dict[str, str] = {}
    head = None
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        name, sha, target = [*line.split("\0"), "", ""][:3]
        branch = name.removeprefix(_ORIGIN)
        tips[branch] = sha
        if branch == "HEAD" and target.startswith(_ORIGIN):
            head = target.removeprefix(_ORIGIN)
    return RemoteRefs(tips, head)


class SyncedReads:
    """The answers of the clone at ``git_dir`` as of its last sync: refs until
    :meth:`forget_refs`, files and histories by commit for good (at most ``kept`` of each and
    64 MiB of files; the least recently used go). ``git_dir`` is a clone's ``.git``, its
    parent the work tree; the caller makes sure the clone exists before asking."""

    def __init__(self, git_dir: Path, *, kept: int = _KEPT) -> None:
        self._git_dir = git_dir
        self._kept = kept
        self._lock = threading.Lock()
        self._refs: RemoteRefs | None = None
        self._head: str | None = None
        self._objects: OrderedDict[tuple[str, str], tuple[str, bytes] | None] = OrderedDict()
        self._bytes = 0
        self._answers: OrderedDict[Hashable, object] = OrderedDict()
        self._reader: ObjectReader | None = None

    def forget_refs(self) -> None:
        """The clone's remote-tracking refs may have moved (a sync, a fetch, a push)."""
        with self._lock:
            self._refs = self._head = None

    def close(self) -> None:
        """Stop the object reader (a new one starts at the next read)."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def refs(self) -> RemoteRefs:
        """The refs as of the last sync; none, and asked again next time, when git failed
        (as each ``rev-parse`` of a branch found none before)."""
        with self._lock:
            if self._refs is None:
                self._refs = read_remote_refs(self._git_dir)
            return self._refs or RemoteRefs({}, None)

    def default_branch(self) -> str:
        """The branch ``origin/HEAD`` names, else ``main``; when it names none that exists
        (or there is none), ``git symbolic-ref`` is asked, once per sync."""
        head = self.refs().head
        if head is not None:
            return head
        with self._lock:
            if self._head is None:
                done = subprocess.run(
                    ["git", f"--git-dir={self._git_dir}", "symbolic-ref", "--quiet",
                     f"{_ORIGIN}HEAD"],
                    capture_output=True, check=False, timeout=120,
                )  # fmt: skip
                named = done.stdout.decode("utf-8", "surrogateescape").strip()
                self._head = named.removeprefix(_ORIGIN) if done.returncode == 0 else "main"
            return self._head

    def objects(self, sha: str, paths: list[str]) -> list[tuple[str, bytes] | None]:
        """``(type, content)`` of each path in commit ``sha``'s tree (None: absent)."""
        found: dict[str, tuple[str, bytes] | None] = {}
        with self._lock:
            for path in paths:
                if (sha, path) in self._objects:
                    self._objects.move_to_end((sha, path))
                    found[path] = self._objects[(sha, path)]
            missing = [path for path in dict.fromkeys(paths) if path not in found]
            if missing:
                if self._reader is None:
                    self._reader = ObjectReader(self._git_dir, self._git_dir.parent)
                try:
                    read = self._reader.read([f"{sha}:{path}" for path in missing])
                except OSError:  # git cannot run here: absent, as a failed git show was
                    return [found.get(path) for path in paths]
                for path, value in zip(missing, read, strict=True):
                    found[path] = value
                    self._objects[(sha, path)] = value
                    self._bytes += len(value[1]) if value else 0
                while len(self._objects) > self._kept or self._bytes > _KEPT_BYTES:
                    _, gone = self._objects.popitem(last=False)
                    self._bytes -= len(gone[1]) if gone else 0
        return [found[path] for path in paths]

    def answer(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``'s answer, kept under ``key`` (which must name the commits it
        depends on by sha: an answer is never recomputed)."""
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._answers[key] = value
            while len(self._answers) > self._kept:
                self._answers.popitem(last=False)
        return value
