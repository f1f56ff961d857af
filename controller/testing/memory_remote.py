"""The remote of the in-memory Git: commits (whole trees) by sha and branch tips.

:class:`MemoryRemote` is what every :class:`~controller.testing.MemoryReleaseRepository` clone
fetches from and pushes to, and what a test moves as everyone else who writes to the GitOps
repository (a person's push, a pull request's merge button). A push is accepted only as a
fast-forward; commits are named by their content, so two identical commits are one, as in Git.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Commit", "MemoryRemote", "files_under", "make_commit"]

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)\s*:\s*(.*)$")


def files_under(root: Path, prefix: str = "") -> dict[str, str]:
    """Every file below ``root`` by its path relative to it (under ``prefix``), as text: what
    a test seeds a remote with (``files_under(repo / "manifests", "manifests")``)."""
    lead = f"{prefix.rstrip('/')}/" if prefix else ""
    return {
        lead + path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@dataclass(frozen=True)
class Commit:
    """One commit: the whole tree (path -> text), its parents (first parent first) and what
    ``git log`` shows of it."""

    sha: str
    parents: tuple[str, ...]
    files: Mapping[str, str]
    message: str
    author: str
    time: float

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def trailers(self) -> dict[str, str]:
        """The trailers of the message as ``%(trailers:only,unfold)`` reads them."""
        return _trailers(self.message)


def make_commit(
    parents: tuple[str, ...], files: Mapping[str, str], message: str, author: str, when: float
) -> Commit:
    """A commit named by its content, as Git names one: identical commits are one commit."""
    message = message.strip()
    content = repr((parents, sorted(files.items()), message, author, when))
    sha = hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    return Commit(sha, parents, dict(files), message, author, when)


def _trailers(message: str) -> dict[str, str]:
    """The trailers of a message as ``%(trailers:only,unfold)`` reads them: its last
    paragraph (never the subject's) when every line of it is ``Key: value``."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return {}
    lines: list[str] = []
    for line in paragraphs[-1].splitlines():
        if line[:1].isspace() and lines:
            lines[-1] += " " + line.strip()  # a folded value continues the line above
        else:
            lines.append(line)
    matches = [_TRAILER.match(line) for line in lines]
    if not all(matches):
        return {}
    return {m.group(1): m.group(2).strip() for m in matches if m}


class MemoryRemote:
    """The remote every clone pushes to: commits by sha and branch tips (thread-safe).

    ``files`` seeds ``branch`` with one root commit. :meth:`commit` and :meth:`merge` are
    another writer's pushes (a person, CI, another controller), for a test to move the remote.
    """

    def __init__(
        self,
        files: Mapping[str, str] | None = None,
        *,
        branch: str = "main",
        url: str = "memory://gitops",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.default_branch = branch
        self.clock = clock
        self.commits: dict[str, Commit] = {}
        self.branches: dict[str, str] = {}
        self.lock = threading.RLock()
        if files is not None:
            root = make_commit((), files, "Initial commit", "someone", self.now())
            self.commits[root.sha] = root
            self.branches[branch] = root.sha

    def now(self) -> float:
        """A commit time: whole seconds, as Git keeps them."""
        return float(int(self.clock()))

    def tip(self, branch: str) -> str | None:
        """The branch's tip now (None: no such branch)."""
        with self.lock:
            return self.branches.get(branch)

    def files(self, branch: str) -> dict[str, str]:
        """The branch's tree now (empty: no such branch)."""
        with self.lock:
            sha = self.branches.get(branch)
            return dict(self.commits[sha].files) if sha else {}

    def log(self, branch: str) -> list[Commit]:
        """The branch's first-parent history now, newest first."""
        with self.lock:
            found: list[Commit] = []
            sha = self.branches.get(branch)
            while sha is not None:
                found.append(self.commits[sha])
                sha = self.commits[sha].parents[0] if self.commits[sha].parents else None
            return found

    def commit(
        self,
        branch: str,
        changes: Mapping[str, str | None],
        message: str,
        *,
        start: str | None = None,
        author: str = "someone else",
    ) -> str:
        """Push a commit of ``changes`` (None deletes a file) onto ``branch``, created from
        ``start``'s tip when it does not exist; returns the commit."""
        with self.lock:
            parent = self.branches.get(branch) or (self.branches.get(start) if start else None)
            files = dict(self.commits[parent].files) if parent else {}
            for path, text in changes.items():
                if text is None:
                    files.pop(path, None)
                else:
                    files[path] = text
            made = make_commit((parent,) if parent else (), files, message, author, self.now())
            self.commits[made.sha] = made
            self.branches[branch] = made.sha
            return made.sha

    def merge(self, branch: str, into: str, message: str, *, author: str = "someone else") -> str:
        """Merge ``branch`` into ``into`` with a merge commit (the pull request's merge button):
        each file as the side that changed it since their common ancestor left it (``branch``'s
        when both did)."""
        with self.lock:
            ours, theirs = self.branches[into], self.branches[branch]
            base = self._merge_base(ours, theirs)
            mine, other = self.commits[ours].files, self.commits[theirs].files
            old = self.commits[base].files if base else {}
            files: dict[str, str] = {}
            for path in {*mine, *other}:
                text = other.get(path) if other.get(path) != old.get(path) else mine.get(path)
                if text is not None:
                    files[path] = text
            made = make_commit((ours, theirs), files, message, author, self.now())
            self.commits[made.sha] = made
            self.branches[into] = made.sha
            return made.sha

    def ancestors(self, sha: str) -> set[str]:
        """``sha`` and every commit reachable from it through any parent."""
        with self.lock:
            seen, todo = set(), [sha]
            while todo:
                current = todo.pop()
                if current not in seen and current in self.commits:
                    seen.add(current)
                    todo.extend(self.commits[current].parents)
            return seen

    def _merge_base(self, one: str, two: str) -> str | None:
        common = self.ancestors(one) & self.ancestors(two)
        return next((c for c in self._breadth_first(two) if c in common), None)

    def _breadth_first(self, sha: str) -> Iterator[str]:
        queue, seen = [sha], set()
        while queue:
            current = queue.pop(0)
            if current not in seen:
                seen.add(current)
                yield current
                queue.extend(self.commits[current].parents)

    def push(self, branch: str, made: Commit, *, lease: str | None = None) -> bool:
        """Move ``branch`` to ``made`` if that is a fast-forward (or creates it), or, with a
        ``lease``, if the branch is still at that sha (``--force-with-lease``); False when the
        branch moved to something else first (a lost race)."""
        with self.lock:
            current = self.branches.get(branch)
            if lease is not None:
                if current != lease:
                    return False
            elif current is not None and current not in self._ancestors_with(made):
                return False
            self.commits[made.sha] = made
            self.branches[branch] = made.sha
            return True

    def _ancestors_with(self, made: Commit) -> set[str]:
        found = {made.sha}
        for parent in made.parents:
            found |= self.ancestors(parent)
        return found
