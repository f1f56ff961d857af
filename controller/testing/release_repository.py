"""Git in memory: a :class:`~controller.ports.ReleaseRepository` for tests of the services.

Why it exists: a rollout or a proposal is a sequence of reads of one fetched snapshot and of
compare-and-swap pushes, and the interesting cases (a lost race, an unreachable or refusing
remote, a controller that dies between its commit and its push) are awkward to produce with a
real remote. :class:`MemoryRemote` holds commits (whole trees with parents, message, author and
a whole-second time) and branch tips; :class:`MemoryReleaseRepository` is one controller's
clone of it, honest where the services depend on Git:

- reads answer from the branches as of the last :meth:`~MemoryReleaseRepository.sync` (the
  first read syncs, as a first clone does), and a commit is known once fetched or pushed;
- an edit runs on a real work tree on disk (so rendering the overlay with kustomize works), and
  an edit that changes nothing makes no commit;
- a push is accepted only as a fast-forward of the remote branch; a lost race is fetched and the
  edit re-applied on the new tip, ``max_attempts`` times, then
  :class:`~controller.errors.GitConflict`, with the messages and errors
  :class:`~controller.backends.git_repo.GitWorkspace` raises;
- history is first-parent, so a merged proposal's pin changed with the merge commit.

Faults, set on the clone: :attr:`~MemoryReleaseRepository.outage` (fetch and push fail as an
unreachable remote), :attr:`~MemoryReleaseRepository.refusal` (a push is refused, a hook's
reason), :attr:`~MemoryReleaseRepository.races` (the next pushes find another writer's commit
landed first) and the :attr:`~MemoryReleaseRepository.before_push` and
:attr:`~MemoryReleaseRepository.after_push` hooks (raise there to kill the controller on
either side of its push). ``tests/test_release_repository_contract.py`` holds it to the
behaviour of the real one.

What it is not: Git. No merges of diverged edits on push, no object store beyond commits,
diffs from :mod:`difflib` (the same hunks for the line edits a pin gets, without ``index``
lines), and no backoff between retries (nothing to wait for in memory).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from controller.errors import GitConflict, PermanentError, RemoteUnavailable
from controller.ports import ChangeInfo, CommitOutcome, ReleaseRepository
from controller.testing.memory_remote import Commit, MemoryRemote, files_under, make_commit

__all__ = ["MemoryReleaseRepository"]


def _at(files: Mapping[str, str], path: str) -> object:
    """What ``path`` is in a tree: a file's text, a directory's files, or None."""
    if path in files:
        return files[path]
    lead = path.rstrip("/") + "/"
    return tuple(sorted((k, v) for k, v in files.items() if k.startswith(lead))) or None


class MemoryReleaseRepository:
    """One controller's clone of a :class:`MemoryRemote` (a new one seeded with ``files`` when
    no ``remote`` is given), committing as ``author``. Another controller on the same remote:
    :meth:`clone`."""

    def __init__(
        self,
        files: Mapping[str, str] | None = None,
        *,
        remote: MemoryRemote | None = None,
        author: str = "Sluice",
        max_attempts: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.remote = remote if remote is not None else MemoryRemote(files or {}, clock=clock)
        self.author = author
        self.max_attempts = max_attempts
        self._seen: dict[str, str] | None = None
        self._known: set[str] = set()
        self._mutex = threading.RLock()
        #: Fetches and pushes fail as an unreachable remote does.
        self.outage = False
        #: Pushes are refused with this reason (a protected branch, a hook), when set.
        self.refusal: str | None = None
        #: The next this many pushes find another writer's commit landed on the branch first.
        self.races = 0
        #: Called with the branch after a commit is made and before it is pushed.
        self.before_push: Callable[[str], None] | None = None
        #: Called with the branch and the commit after a push landed.
        self.after_push: Callable[[str, str], None] | None = None
        #: Fetches made, and edits run (one per push attempt, and per preview).
        self.syncs = 0
        self.edits = 0

    def clone(self, *, author: str | None = None) -> MemoryReleaseRepository:
        """Another workspace on the same remote (another controller, another process)."""
        return MemoryReleaseRepository(
            remote=self.remote, author=author or self.author, max_attempts=self.max_attempts
        )

    # -- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this workspace exclusively (reentrant)."""
        with self._mutex:
            yield

    def sync(self) -> None:
        """Fetch: the remote's branches and commits as they are now."""
        with self._mutex:
            if self.outage:
                raise RemoteUnavailable(
                    f"git remote {self.remote.url} cannot be read (fatal: unable to access "
                    f"'{self.remote.url}/'); check the URL and credentials"
                )
            with self.remote.lock:
                self._seen = dict(self.remote.branches)
                self._known = set(self.remote.commits)
            self.syncs += 1

    def _branches(self) -> dict[str, str]:
        if self._seen is None:
            self.sync()  # a first read clones
        assert self._seen is not None
        return self._seen

    def _commit(self, sha: str) -> Commit | None:
        self._branches()
        return self.remote.commits.get(sha) if sha in self._known else None

    def _files(self, branch: str) -> Mapping[str, str] | None:
        sha = self._branches().get(branch)
        return self.remote.commits[sha].files if sha else None

    def default_branch(self) -> str:
        return self.remote.default_branch

    def remote_sha(self, branch: str) -> str | None:
        return self._branches().get(branch)

    def read(self, branch: str, path: str) -> str | None:
        text = (self._files(branch) or {}).get(path)
        # GitWorkspace reads one file through GitPython, which drops its last newline.
        return text.removesuffix("\n") if text is not None else None

    def read_many(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        files = self._files(branch) or {}
        return {path: files.get(path) for path in paths}

    def blob_ids(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        files = self._files(branch) or {}
        return {path: _blob_id(files[path]) if path in files else None for path in paths}

    def list_dir(self, branch: str, path: str) -> list[str]:
        lead = path.rstrip("/") + "/"
        names: dict[str, str] = {}
        for name in self._files(branch) or {}:
            if name.startswith(lead):
                first, _, rest = name[len(lead) :].partition("/")
                names[first] = first + "/" if rest else first
        return sorted(names, key=names.__getitem__)  # Git orders a directory as "name/"

    def _first_parents(self, sha: str | None, stop: set[str] | None = None) -> Iterator[Commit]:
        while sha is not None and sha not in (stop or ()):
            commit = self._commit(sha)
            if commit is None:
                return
            yield commit
            sha = commit.parents[0] if commit.parents else None

    def _changed(self, commit: Commit, path: str) -> bool:
        parent = self._commit(commit.parents[0]) if commit.parents else None
        return _at(commit.files, path) != _at(parent.files if parent else {}, path)

    def changes(self, branch: str, path: str, limit: int = 30) -> list[ChangeInfo]:
        found: list[ChangeInfo] = []
        for commit in self._first_parents(self._branches().get(branch)):
            if len(found) == limit:
                break
            if self._changed(commit, path):
                found.append(ChangeInfo(commit.sha, commit.time, commit.trailers))
        return found

    def last_change(self, branch: str, path: str) -> ChangeInfo | None:
        found = self.changes(branch, path, limit=1)
        return found[0] if found else None

    def message(self, sha: str) -> str | None:
        commit = self._commit(sha)
        return commit.message + "\n" if commit else None  # as ``git show -s --format=%B``

    def log_subjects(self, branch: str, since: str | None, until: str, path: str) -> list[str]:
        last = self._commit(until)
        if since is None:
            since = last.parents[0] if last and last.parents else None
        if last is None or since is None or self._commit(since) is None:
            return []  # an unknown commit, or a root commit's own (Git has no ``root~1``)
        stop = self.remote.ancestors(since)
        changed = [c for c in self._first_parents(until, stop) if self._changed(c, path)]
        return [f"{c.sha[:7]} {c.subject}" for c in reversed(changed)]

    def diff(self, old: str, new: str, path: str) -> str:
        before, after = self._commit(old), self._commit(new)
        if before is None or after is None:
            raise PermanentError(f"unknown revision {old if before is None else new!r}")
        return _unified(before.files, after.files, path)

    # -- writing -------------------------------------------------------------------------

    def preview(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        path: str,
        restart_merged: bool = False,
    ) -> str:
        with self.locked():
            start, _ = self._start_or_restart(branch, base, restart_merged, hint="")
            files = self.remote.commits[start].files
            edited = self._edited(files, edit)
            # As ``git diff <start> -- path``: the files the start commit tracks.
            tracked = {name: text for name, text in edited.items() if name in files}
            return _unified(files, tracked, path)

    def commit_and_push(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        message: str,
        restart_merged: bool = False,
    ) -> CommitOutcome:
        with self.locked():
            for attempt in range(1, self.max_attempts + 1):
                if attempt > 1:
                    self.sync()
                start, lease = self._start_or_restart(
                    branch, base, restart_merged, hint="; create it or fix the environment's branch"
                )
                files = self.remote.commits[start].files
                edited = self._edited(files, edit)
                if edited == dict(files):
                    return CommitOutcome(sha=start, committed=False, attempts=attempt)
                made = make_commit((start,), edited, message, self.author, self.remote.now())
                if self._push(branch, made, lease=lease):
                    return CommitOutcome(sha=made.sha, committed=True, attempts=attempt)
            raise GitConflict(
                f"git push of {branch} to {self.remote.url} lost the race {self.max_attempts} "
                "times (the remote keeps moving); run again"
            )

    def _start_or_restart(
        self, branch: str, base: str, restart_merged: bool, *, hint: str
    ) -> tuple[str, str | None]:
        """Where an edit of ``branch`` starts, and the tip it replaces (None: a fast-forward);
        with ``restart_merged``, a branch the base already holds starts again from the base,
        as GitWorkspace's does."""
        seen = self._branches()
        tip, base_tip = seen.get(branch), seen.get(base)
        restart = restart_merged and branch != base
        if restart and tip and base_tip and tip in self.remote.ancestors(base_tip):
            return base_tip, tip
        return self._start(branch, base, hint=hint), None

    def _start(self, branch: str, base: str, *, hint: str) -> str:
        seen = self._branches()
        start = seen.get(branch) or seen.get(base)
        if start is None:
            raise PermanentError(f"branch {base!r} does not exist on {self.remote.url}{hint}")
        return start

    def _edited(self, files: Mapping[str, str], edit: Callable[[Path], None]) -> dict[str, str]:
        """The tree after ``edit`` ran on a work tree of ``files``."""
        self.edits += 1
        with tempfile.TemporaryDirectory(prefix="sluice-memory-git-") as tmp:
            tree = Path(tmp)
            for name, text in files.items():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                (tree / name).write_text(text, encoding="utf-8")
            edit(tree)
            return files_under(tree)

    def _push(self, branch: str, made: Commit, *, lease: str | None = None) -> bool:
        """Push ``made`` to ``branch`` (replacing the tip ``lease`` when given, as
        ``--force-with-lease`` does): False on a lost race, the remote's errors otherwise."""
        if self.before_push is not None:
            self.before_push(branch)
        if self.outage:
            raise RemoteUnavailable(
                f"git push to {self.remote.url} failed (fatal: unable to access "
                f"'{self.remote.url}/'); check the remote and its credentials"
            )
        if self.refusal is not None:
            raise PermanentError(
                f"git push of {branch} to {self.remote.url} was refused: {self.refusal}"
            )
        if self.races > 0:
            self.races -= 1
            self._another_writer(branch, made.parents[0])
        if not self.remote.push(branch, made, lease=lease):
            return False
        assert self._seen is not None
        self._seen[branch] = made.sha  # a push moves the remote-tracking branch, as git's does
        self._known.add(made.sha)
        if self.after_push is not None:
            self.after_push(branch, made.sha)
        return True

    def _another_writer(self, branch: str, start: str) -> None:
        """Another writer's commit lands on ``branch`` (which it creates from ``start`` when
        it does not exist yet), between this clone's fetch and its push."""
        remote = self.remote
        with remote.lock:
            parent = remote.branches.get(branch) or start
            other = make_commit(
                (parent,), remote.commits[parent].files, "Another writer's change",
                "someone else", remote.now(),
            )  # fmt: skip
            remote.commits[other.sha] = other
            remote.branches[branch] = other.sha


def _blob_id(text: str) -> str:
    """Git's object id of a blob holding ``text``, as ``git hash-object`` computes it."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _unified(before: Mapping[str, str], after: Mapping[str, str], path: str) -> str:
    """``git diff``'s unified diff of the files at or under ``path`` (no ``index`` lines)."""
    lead = path.rstrip("/") + "/"
    names = sorted(n for n in {*before, *after} if n == path or n.startswith(lead))
    out: list[str] = []
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        hunks = list(
            difflib.unified_diff(
                (old or "").splitlines(), (new or "").splitlines(), lineterm="", n=3
            )
        )[2:]
        out += [
            f"diff --git a/{name} b/{name}",
            *(["new file mode 100644"] if old is None else []),
            *(["deleted file mode 100644"] if new is None else []),
            f"--- {'/dev/null' if old is None else 'a/' + name}",
            f"+++ {'/dev/null' if new is None else 'b/' + name}",
            *hunks,
        ]
    return "\n".join(out)


_port: type[ReleaseRepository] = MemoryReleaseRepository  # mypy holds the fake to its port
