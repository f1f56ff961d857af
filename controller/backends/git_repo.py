"""The Git repository that holds the desired state: clone, edit, commit, push, retry.

Git is Sluice's database, so writes follow a database's rules: every change is recomputed from
the remote's current tip (fetch, reset, re-apply the edit), an edit that changes nothing makes
no commit, and a push that loses a race (non-fast-forward) is retried from the new tip with
backoff, a bounded number of times. Nothing is ever force-pushed.

Processes that share a state directory share its clone (``repo-<sha(url)>``), so every
operation that moves the clone's work tree or refs (clone and fetch, checkout-edit-commit-push,
a preview) holds an exclusive ``fcntl.flock`` on ``repo-<sha(url)>.lock`` beside it; a caller
wraps a whole operation (fetch, read, edit, push) in :meth:`GitWorkspace.locked` so that no
other process or thread moves the work tree in between. The lock is reentrant within one
workspace object and released by the kernel if the process dies.

:class:`GitWorkspace` holds the clone and its operations; the parts beside it are the lock
(:mod:`~controller.backends.git_clone_lock`), the push and its lost-race retries
(:mod:`~controller.backends.git_push`), the plumbing commit writer
(:mod:`~controller.backends.git_commit_writer`) and the reads of many files or commits at once
(:mod:`~controller.backends.git_batch_reads`, :mod:`~controller.backends.git_history`), and
what the last sync saw, read once (:mod:`~controller.backends.git_snapshot`: the refs until the
next sync, fetch or push; files and histories by commit).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from git import GitCommandError, Repo

from controller.backends import git_history
from controller.backends.git_batch_reads import blob_ids
from controller.backends.git_clone_lock import LOCK_TIMEOUT_SECONDS, CloneLock
from controller.backends.git_commit_writer import commit_edit, empty_tree_commit
from controller.backends.git_push import LostRace, git_failure, push, retry_lost_races
from controller.backends.git_snapshot import SyncedReads
from controller.errors import PermanentError, RemoteUnavailable
from controller.ports import ChangeInfo, CommitOutcome
from controller.redact import redact

__all__ = ["LOCK_TIMEOUT_SECONDS", "ChangeInfo", "CommitOutcome", "GitWorkspace", "Identity"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Identity:
    """Author and committer of Sluice's commits (what Argo CD's UI shows as the author)."""

    name: str = "Sluice"
    email: str = "sluice@users.noreply.github.com"


class GitWorkspace:
    """A working clone of one remote, kept under ``cache_dir`` and reused between passes: the
    :class:`~controller.ports.ReleaseRepository` on a real Git remote."""

    def __init__(
        self,
        remote_url: str,
        cache_dir: Path,
        *,
        identity: Identity | None = None,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.remote_url = remote_url
        digest = hashlib.sha256(remote_url.encode()).hexdigest()[:12]
        self.path = cache_dir / f"repo-{digest}"
        self.lock_path = cache_dir / f"repo-{digest}.lock"
        self.identity = identity or Identity()
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._repo: Repo | None = None
        self._lock = CloneLock(self.lock_path, self.path)
        self._synced = SyncedReads(self.path.absolute() / ".git")  # not a cycle to self

    # -- the lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the clone exclusively: other processes (and other workspace objects on the same
        clone) wait. Reentrant; a holder that dies releases it with its file descriptor."""
        with self._lock.held(timeout_seconds):
            yield

    # -- reading -------------------------------------------------------------------------

    def sync(self) -> None:
        """Clone on first use, then fetch (one network round trip per call)."""
        with self.locked():
            self._sync()

    def _sync(self) -> None:
        self._synced.forget_refs()
        try:
            if self._repo is None and (self.path / ".git").is_dir():
                self._repo = Repo(self.path)
                self._repo.remote("origin").set_url(self.remote_url)
            if self._repo is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = Repo.clone_from(self.remote_url, self.path, no_checkout=True)
                self._synced.close()  # a new clone: nothing the reader has open is it
            else:
                self._repo.git.fetch("origin", "--prune", "--quiet")
        except GitCommandError as exc:
            raise RemoteUnavailable(
                f"git remote {redact(self.remote_url)} cannot be read ({git_failure(exc)}); "
                "check the URL and credentials"
            ) from None
        with self._repo.config_writer() as config:
            config.set_value("user", "name", self.identity.name)
            config.set_value("user", "email", self.identity.email)

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            self.sync()
        assert self._repo is not None
        return self._repo

    def remote_sha(self, branch: str) -> str | None:
        """The remote branch's tip as of the last :meth:`sync`, or None if it does not exist
        (the refs are read once per sync: :mod:`~controller.backends.git_snapshot`)."""
        self.repo  # noqa: B018 - a first read clones
        return self._synced.refs().tips.get(branch)

    def read(self, branch: str, path: str) -> str | None:
        """A file's content on the remote branch as of the last sync, or None if absent; as
        ``git show`` prints it through GitPython (its last newline dropped)."""
        sha = self.remote_sha(branch)
        if sha is None:
            return None
        (found,) = self._synced.objects(sha, [path])
        if found is None:
            return None
        kind, content = found
        if kind != "blob":  # a directory: git show's listing
            try:
                return str(self.repo.git.show(f"{sha}:{path}"))
            except GitCommandError:
                return None
        return content.removesuffix(b"\n").decode("utf-8", "surrogateescape")

    def read_many(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Many files of a remote branch, each read once per commit (one long-lived
        ``git cat-file --batch``)."""
        sha = self.remote_sha(branch) if paths else None
        if sha is None:
            return dict.fromkeys(paths)
        found = self._synced.objects(sha, paths)
        return {
            path: None if value is None else value[1].decode("utf-8")
            for path, value in zip(paths, found, strict=True)
        }

    def blob_ids(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Each file's blob id on a remote branch from ``git ls-tree`` (the tree, not the
        files: a 1,000-pin listing takes a few ms where reading them takes 100+)."""
        return blob_ids(Path(self.repo.git_dir), branch, paths)

    def default_branch(self) -> str:
        """The remote's default branch (what ``origin/HEAD`` points at), else ``main``."""
        self.repo  # noqa: B018 - a first read clones
        return self._synced.default_branch()

    def list_dir(self, branch: str, path: str) -> list[str]:
        """Names directly under ``path`` on the remote branch (empty if absent)."""
        try:
            out = str(
                self.repo.git.ls_tree("--name-only", f"refs/remotes/origin/{branch}", f"{path}/")
            )
        except GitCommandError:
            return []
        return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]

    def last_change(self, branch: str, path: str) -> ChangeInfo | None:
        """The last commit on the remote branch that changed ``path``: sha, commit time and its
        ``Sluice-*`` trailers (None when no commit touched it); kept by the tip's sha."""
        tip = self.remote_sha(branch)
        if tip is None:
            return None
        return self._synced.answer(
            ("last_change", tip, path), lambda: git_history.last_change(self.repo, tip, path)
        )

    def log_subjects(self, branch: str, since: str | None, until: str, path: str) -> list[str]:
        """``<short sha> <subject>`` of each first-parent commit of the remote branch after
        ``since`` up to ``until`` that changed ``path``, oldest first (``since`` None:
        ``until``'s own, none for a root commit)."""
        return git_history.log_subjects(self.repo, since, until, path)

    def changes(self, branch: str, path: str, limit: int = 30) -> list[ChangeInfo]:
        """The last ``limit`` first-parent commits of the remote branch that changed ``path``,
        newest first, as :meth:`last_change` reads one (as of the last sync)."""
        tip = self.remote_sha(branch)
        if tip is None:
            return []
        return list(
            self._synced.answer(
                ("changes", tip, path, limit),
                lambda: git_history.changes(self.repo, tip, path, limit),
            )
        )

    def message(self, sha: str) -> str | None:
        """The full message of commit ``sha`` (None when the clone does not have it)."""
        try:
            return str(self.repo.git.show("-s", "--format=%B", sha))
        except GitCommandError:
            return None

    # -- refs outside the branches (leases) ------------------------------------------------

    def fetch_ref(self, ref: str) -> tuple[str, str] | None:
        """The remote's ``ref`` (outside ``refs/heads``): its commit and message, or None if
        the remote has no such ref. One round trip."""
        seen = "refs/sluice-seen/" + ref.removeprefix("refs/")
        with self.locked():
            repo = self.repo
            try:
                repo.git.fetch("--quiet", "--no-tags", "origin", f"+{ref}:{seen}")
            except GitCommandError as exc:
                if "couldn't find remote ref" in f"{exc.stderr}".lower():
                    return None
                raise RemoteUnavailable(
                    f"git remote {redact(self.remote_url)} cannot be read ({git_failure(exc)}); "
                    "check the URL and credentials"
                ) from None
            self._synced.forget_refs()
            sha = str(repo.git.rev_parse("--verify", seen))
            return sha, str(repo.git.log("-1", "--format=%B", sha))

    def swap_ref(self, ref: str, expected: str | None, message: str | None) -> bool:
        """Point the remote's ``ref`` at a new parentless commit with ``message`` and an empty
        tree (None: delete it) if it still points at ``expected`` (None: does not exist),
        with ``--force-with-lease``; False when another writer moved it first."""
        with self.locked():
            repo = self.repo
            source = "" if message is None else empty_tree_commit(repo, message)
            try:
                self._push(ref, f"{source}:{ref}", lease=f"{ref}:{expected or ''}")
            except LostRace:
                return False
            return True

    def diff(self, old: str, new: str, path: str) -> str:
        """Unified diff of ``path`` between two commits."""
        return str(self.repo.git.diff(old, new, "--", path))

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
        """What :meth:`commit_and_push` would change in ``path``, without committing."""
        with self.locked():
            start, _ = self._start(branch, base, restart_merged=restart_merged)
            return self._preview(branch=branch, base=base, start=start, edit=edit, path=path)

    def _start(
        self, branch: str, base: str, *, restart_merged: bool
    ) -> tuple[str | None, str | None]:
        """Where an edit of ``branch`` starts, and the tip it replaces (None: a fast-forward):
        the branch's tip, the base's when it does not exist, and with ``restart_merged`` also
        when the base already holds the branch's tip (a proposal merged, then undone)."""
        tip, base_tip = self.remote_sha(branch), self.remote_sha(base)
        if restart_merged and tip and base_tip and branch != base and self.is_merged(tip, base):
            return base_tip, tip
        return tip or base_tip, None

    def _preview(
        self, *, branch: str, base: str, start: str | None, edit: Callable[[Path], None], path: str
    ) -> str:
        if start is None:
            raise PermanentError(f"branch {base!r} does not exist on {redact(self.remote_url)}")
        self._checkout(branch, start)
        try:
            edit(Path(self.repo.working_tree_dir or self.path))
            return str(self.repo.git.diff(start, "--", path))
        finally:
            self._checkout(branch, start)

    def _checkout(self, branch: str, start: str) -> None:
        self.repo.git.checkout("-B", branch, start, "--force", "--quiet")
        self.repo.git.reset("--hard", "--quiet", start)
        self.repo.git.clean("-fdxq")

    def commit_and_push(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        message: str,
        restart_merged: bool = False,
    ) -> CommitOutcome:
        """Apply ``edit`` to ``branch`` (created from ``base`` if absent; with
        ``restart_merged``, remade from ``base`` if the base holds its tip), commit, push.

        ``edit`` receives the work tree and must be idempotent: on a lost push race it runs
        again on the remote's new tip. An edit that changes nothing makes no commit.
        """
        with self.locked():
            return self._retrying_races(
                lambda number: self._push_once(
                    branch=branch,
                    base=base,
                    edit=edit,
                    message=message,
                    attempt=number,
                    restart_merged=restart_merged,
                ),
                f"git push of {branch} to {redact(self.remote_url)} lost the race "
                f"{self.max_attempts} times (the remote keeps moving); run again",
            )

    def _retrying_races(self, attempt: Callable[[int], _T], lost: str) -> _T:
        """``attempt(number)`` until it does not lose a push race, syncing before each retry
        (:func:`~controller.backends.git_push.retry_lost_races`)."""
        return retry_lost_races(
            attempt,
            lost,
            sync=self.sync,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            sleep=self._sleep,
        )

    def _push(self, name: str, refspec: str, *, lease: str | None = None) -> None:
        """Push, then read the refs afresh (a push moves the remote-tracking branch)."""
        try:
            push(self.repo, self.remote_url, name, refspec, lease=lease)
        finally:
            self._synced.forget_refs()

    def branches(self, prefix: str) -> dict[str, str]:
        """The remote's branches under ``prefix`` (as of the last sync) and their tips."""
        out = str(
            self.repo.git.for_each_ref(
                "--format=%(refname:lstrip=3) %(objectname)", f"refs/remotes/origin/{prefix}"
            )
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def is_merged(self, commit: str, base: str) -> bool:
        """Whether ``commit`` is already on the remote's ``base`` (as of the last sync)."""
        try:
            self.repo.git.merge_base("--is-ancestor", commit, f"refs/remotes/origin/{base}")
        except GitCommandError:
            return False
        return True

    def merge(self, *, branch: str, base: str, message: str) -> str:
        """Merge the remote's ``branch`` into ``base`` as a pull request's merge button does:
        a merge commit (never a fast-forward), pushed to ``base``, the branch kept. Returns the
        merge commit. A conflict changes nothing and is a :class:`PermanentError` naming both; a
        push that loses a race is merged again from the new tip, like every other write."""
        with self.locked():
            return self._retrying_races(
                lambda _: self._merge_once(branch=branch, base=base, message=message),
                f"git push of the merge of {branch} into {base} to "
                f"{redact(self.remote_url)} lost the race {self.max_attempts} times; run again",
            )

    def _merge_once(self, *, branch: str, base: str, message: str) -> str:
        start, head = self.remote_sha(base), self.remote_sha(branch)
        if start is None or head is None:
            missing = base if start is None else branch
            raise PermanentError(
                f"branch {missing!r} does not exist on {redact(self.remote_url)}; "
                "propose again (sluice propose) or fix the environment's branch"
            )
        self._checkout(base, start)
        try:
            self.repo.git.merge("--no-ff", "--no-edit", "--quiet", "-m", message, head)
        except GitCommandError:
            with contextlib.suppress(GitCommandError):
                self.repo.git.merge("--abort")
            self._checkout(base, start)
            raise PermanentError(
                f"{branch} conflicts with {base} (both changed the same lines); nothing was "
                f"merged: merge {base} into the branch and resolve it, or delete the branch "
                f"(git push origin --delete {branch}) and propose again"
            ) from None
        sha = str(self.repo.head.commit.hexsha)
        self._push(base, f"{sha}:refs/heads/{base}")
        return sha

    def _push_once(
        self,
        *,
        branch: str,
        base: str,
        edit: Callable[[Path], None],
        message: str,
        attempt: int,
        restart_merged: bool,
    ) -> CommitOutcome:
        """One attempt from the remote's current tip (plumbing:
        :func:`~controller.backends.git_commit_writer.commit_edit`);
        :class:`~controller.backends.git_push.LostRace` if the push lost."""
        start, lease = self._start(branch, base, restart_merged=restart_merged)
        if start is None:
            raise PermanentError(
                f"branch {base!r} does not exist on {redact(self.remote_url)}; "
                "create it or fix the environment's branch"
            )
        repo = self.repo
        sha = commit_edit(repo, Path(repo.working_tree_dir or self.path), start, edit, message)
        if sha is None:
            return CommitOutcome(sha=start, committed=False, attempts=attempt)
        expected = f"refs/heads/{branch}:{lease}" if lease is not None else None
        self._push(branch, f"{sha}:refs/heads/{branch}", lease=expected)
        return CommitOutcome(sha=sha, committed=True, attempts=attempt)
