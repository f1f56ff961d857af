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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from git import GitCommandError, Repo
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from controller.errors import GitConflict, PermanentError, RemoteUnavailable
from controller.ports import ChangeInfo, CommitOutcome
from controller.redact import redact

__all__ = ["ChangeInfo", "CommitOutcome", "GitWorkspace", "Identity"]

_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref", "stale info")
_UNREACHABLE = (
    "could not read from remote",
    "does not appear to be a git repository",
    "unable to access",
    "could not resolve host",
    "connection refused",
    "repository not found",
    "not found",
)


_T = TypeVar("_T")
#: Paths per ``git ls-tree`` call (its command line stays far below the kernel's limit).
_LS_TREE_PATHS = 2000


class _LostRace(Exception):
    """Internal: the push was refused because the remote moved; retried from its new tip."""


@dataclass(frozen=True)
class Identity:
    """Author and committer of Sluice's commits (what Argo CD's UI shows as the author)."""

    name: str = "Sluice"
    email: str = "sluice@users.noreply.github.com"


_DETAIL_LIMIT = 1000
#: How long an operation waits for another process's hold on the clone before giving up.
LOCK_TIMEOUT_SECONDS = 600.0


def _unwrap(text: object, stream: str) -> str:
    """GitPython's ``"\n  stderr: '...'"`` wrapper removed: what git itself printed."""
    value = str(text or "").strip()
    prefix = f"{stream}: '"
    if value.startswith(prefix):
        value = value[len(prefix) :]
        value = value.removesuffix("'")
    return value


def _detail(exc: GitCommandError) -> str:
    """Everything git said about the failure, on one line: every line of stderr (a hook's
    ``remote:`` reason included) and the refused refs of ``--porcelain`` output, not just the
    last line (which is often a lone quote of GitPython's wrapper)."""
    lines = [
        line.strip()
        for line in _unwrap(exc.stderr, "stderr").splitlines()
        if line.strip() and not line.lstrip().startswith("hint:")
    ]
    for line in _unwrap(exc.stdout, "stdout").splitlines():
        if line.startswith("!") or "rejected]" in line:
            lines.append(" ".join(line.lstrip("!").split()))
    text = "; ".join(lines) or f"git exited with {exc.status}"
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "…"
    return redact(text)


def _commit_message(message: str) -> str:
    """``message`` as ``git commit -m`` records it (its ``whitespace`` cleanup): trailing
    whitespace, leading and trailing blank lines and repeated blank lines removed."""
    lines: list[str] = []
    for line in message.split("\n"):
        line = line.rstrip(" \t\r")
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "".join(f"{line}\n" for line in lines)


def _cat_file_batch(git_dir: Path, request: bytes) -> list[str | None]:
    """Parse ``git cat-file --batch`` output: one object (or ``missing``) per request line."""
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=True,
        timeout=120,
    )
    out, position = result.stdout, 0
    contents: list[str | None] = []
    for _ in request.splitlines():
        end = out.index(b"\n", position)
        header = out[position:end].split()
        position = end + 1
        if header[-1] == b"missing" or len(header) < 3:
            contents.append(None)
            continue
        size = int(header[2])
        contents.append(out[position : position + size].decode("utf-8"))
        position += size + 1
    return contents


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
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

    # -- the lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the clone exclusively: other processes (and other workspace objects on the same
        clone) wait. Reentrant; a holder that dies releases it with its file descriptor."""
        with self._mutex:
            if self._depth == 0:
                self._lock_fd = self._acquire(timeout_seconds)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

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
                        f"the Git workspace {self.path} stayed locked by another Sluice process "
                        f"for {timeout_seconds:.0f} s ({self.lock_path}); run again"
                    ) from None
                time.sleep(0.02)
            except BaseException:
                os.close(fd)
                raise

    # -- reading -------------------------------------------------------------------------

    def sync(self) -> None:
        """Clone on first use, then fetch (one network round trip per call)."""
        with self.locked():
            self._sync()

    def _sync(self) -> None:
        try:
            if self._repo is None and (self.path / ".git").is_dir():
                self._repo = Repo(self.path)
                self._repo.remote("origin").set_url(self.remote_url)
            if self._repo is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = Repo.clone_from(self.remote_url, self.path, no_checkout=True)
            else:
                self._repo.git.fetch("origin", "--prune", "--quiet")
        except GitCommandError as exc:
            raise RemoteUnavailable(
                f"git remote {redact(self.remote_url)} cannot be read ({_detail(exc)}); "
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
        """The remote branch's tip as of the last :meth:`sync`, or None if it does not exist."""
        try:
            return str(
                self.repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}")
            )
        except GitCommandError:
            return None

    def read(self, branch: str, path: str) -> str | None:
        """A file's content on the remote branch as of the last sync, or None if absent."""
        try:
            return str(self.repo.git.show(f"refs/remotes/origin/{branch}:{path}"))
        except GitCommandError:
            return None

    def read_many(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Many files of a remote branch in one ``git cat-file --batch`` round trip."""
        if not paths:
            return {}
        request = "".join(f"refs/remotes/origin/{branch}:{path}\n" for path in paths).encode()
        contents = _cat_file_batch(Path(self.repo.git_dir), request)
        return dict(zip(paths, contents, strict=True))

    def blob_ids(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        """Each file's blob id on a remote branch from ``git ls-tree`` (the tree, not the
        files: a 1,000-pin listing takes a few ms where reading them takes 100+)."""
        found: dict[str, str | None] = dict.fromkeys(paths)
        for start in range(0, len(paths), _LS_TREE_PATHS):
            chunk = paths[start : start + _LS_TREE_PATHS]
            done = subprocess.run(
                ["git", f"--git-dir={self.repo.git_dir}", "ls-tree", "-z", "--full-tree",
                 f"refs/remotes/origin/{branch}", "--", *chunk],
                capture_output=True, check=False, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                return dict.fromkeys(paths)  # no such branch
            for entry in done.stdout.split(b"\0"):
                info, tab, name = entry.partition(b"\t")
                fields = info.split()
                path = name.decode("utf-8")
                if tab and len(fields) == 3 and fields[1] == b"blob" and path in found:
                    found[path] = fields[2].decode("ascii")
        return found

    def default_branch(self) -> str:
        """The remote's default branch (what ``origin/HEAD`` points at), else ``main``."""
        try:
            ref = str(self.repo.git.symbolic_ref("--quiet", "refs/remotes/origin/HEAD"))
        except GitCommandError:
            return "main"
        return ref.removeprefix("refs/remotes/origin/")

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
        ``Sluice-*`` trailers (None when no commit touched it)."""
        fmt = "%H%x1f%ct%x1f%(trailers:only,unfold,separator=%x1e)"
        # --first-parent: on a merged proposal, the merge commit (merge time) changed the pin.
        try:
            out = str(
                self.repo.git.log(
                    "-1",
                    "--first-parent",
                    f"--format={fmt}",
                    f"refs/remotes/origin/{branch}",
                    "--",
                    path,
                )
            )
        except GitCommandError:
            return None
        if not out.strip():
            return None
        sha, when, trailers = [*out.strip().split("\x1f"), "", ""][:3]
        parsed = {}
        for line in trailers.split("\x1e"):
            key, sep, value = line.partition(":")
            if sep:
                parsed[key.strip()] = value.strip()
        return ChangeInfo(sha=sha, time=float(when), trailers=parsed)

    def log_subjects(self, branch: str, since: str | None, until: str, path: str) -> list[str]:
        """``<short sha> <subject>`` of each first-parent commit of the remote branch after
        ``since`` up to ``until`` that changed ``path``, oldest first (``since`` None:
        ``until``'s own, none for a root commit)."""
        since = since or f"{until}~1"
        try:
            out = str(
                self.repo.git.log(
                    "--first-parent", "--reverse", "--format=%h %s", f"{since}..{until}", "--", path
                )
            )
        except GitCommandError:
            return []
        return [line for line in out.splitlines() if line]

    def changes(self, branch: str, path: str, limit: int = 30) -> list[ChangeInfo]:
        """The last ``limit`` first-parent commits of the remote branch that changed ``path``,
        newest first, as :meth:`last_change` reads one (as of the last sync)."""
        fmt = "%H%x1f%ct%x1f%(trailers:only,unfold,separator=%x1e)%x1d"
        try:
            out = str(
                self.repo.git.log(
                    f"-{limit}",
                    "--first-parent",
                    f"--format={fmt}",
                    f"refs/remotes/origin/{branch}",
                    "--",
                    path,
                )
            )
        except GitCommandError:
            return []
        found = []
        for entry in out.split("\x1d"):
            if not entry.strip():
                continue
            sha, when, trailers = [*entry.strip().split("\x1f"), "", ""][:3]
            parsed = {}
            for line in trailers.split("\x1e"):
                key, sep, value = line.partition(":")
                if sep:
                    parsed[key.strip()] = value.strip()
            found.append(ChangeInfo(sha=sha, time=float(when), trailers=parsed))
        return found

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
                    f"git remote {redact(self.remote_url)} cannot be read ({_detail(exc)}); "
                    "check the URL and credentials"
                ) from None
            sha = str(repo.git.rev_parse("--verify", seen))
            return sha, str(repo.git.log("-1", "--format=%B", sha))

    def swap_ref(self, ref: str, expected: str | None, message: str | None) -> bool:
        """Point the remote's ``ref`` at a new parentless commit with ``message`` and an empty
        tree (None: delete it) if it still points at ``expected`` (None: does not exist),
        with ``--force-with-lease``; False when another writer moved it first."""
        with self.locked():
            repo = self.repo
            if message is None:
                source = ""
            else:
                with Path(os.devnull).open("rb") as empty:
                    tree = str(repo.git.hash_object("-t", "tree", "-w", "--stdin", istream=empty))
                source = str(repo.git.commit_tree(tree, "-m", message))
            try:
                self._push(ref, f"{source}:{ref}", lease=f"{ref}:{expected or ''}")
            except _LostRace:
                return False
            return True

    def diff(self, old: str, new: str, path: str) -> str:
        """Unified diff of ``path`` between two commits."""
        return str(self.repo.git.diff(old, new, "--", path))

    # -- writing -------------------------------------------------------------------------

    def preview(self, *, branch: str, base: str, edit: Callable[[Path], None], path: str) -> str:
        """What :meth:`commit_and_push` would change in ``path``, without committing."""
        with self.locked():
            return self._preview(branch=branch, base=base, edit=edit, path=path)

    def _preview(self, *, branch: str, base: str, edit: Callable[[Path], None], path: str) -> str:
        start = self.remote_sha(branch) or self.remote_sha(base)
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
    ) -> CommitOutcome:
        """Apply ``edit`` to ``branch`` (created from ``base`` if absent), commit, push.

        ``edit`` receives the work tree and must be idempotent: on a lost push race it runs
        again on the remote's new tip. An edit that changes nothing makes no commit.
        """
        with self.locked():
            return self._commit_and_push(branch=branch, base=base, edit=edit, message=message)

    def _commit_and_push(
        self, *, branch: str, base: str, edit: Callable[[Path], None], message: str
    ) -> CommitOutcome:
        return self._retrying_races(
            lambda number: self._push_once(
                branch=branch, base=base, edit=edit, message=message, attempt=number
            ),
            f"git push of {branch} to {redact(self.remote_url)} lost the race "
            f"{self.max_attempts} times (the remote keeps moving); run again",
        )

    def _retrying_races(self, attempt: Callable[[int], _T], lost: str) -> _T:
        """``attempt(number)`` until it does not lose a push race (:class:`_LostRace`): each
        retry syncs first and comes after a jittered exponential backoff; every other failure
        ends the write at once. :class:`GitConflict` with ``lost`` after ``max_attempts``."""
        tries = itertools.count(1)

        def once() -> _T:
            number = next(tries)
            if number > 1:
                self.sync()
            return attempt(number)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._backoff,
            retry=retry_if_exception_type(_LostRace),
            sleep=self._sleep,
        )
        try:
            return retrying(once)
        except RetryError:
            raise GitConflict(lost) from None

    def _push(self, name: str, refspec: str, *, lease: str | None = None) -> None:
        """Push ``refspec`` to origin (with ``--force-with-lease=<lease>`` when given):
        :class:`_LostRace` when the remote moved first, :class:`RemoteUnavailable` when it
        cannot be reached, :class:`PermanentError` naming ``name`` for any other refusal."""
        options = [f"--force-with-lease={lease}"] if lease is not None else []
        try:
            self.repo.git.push("--porcelain", *options, "origin", refspec)
        except GitCommandError as exc:
            text = f"{exc.stdout}\n{exc.stderr}".lower()
            if any(marker in text for marker in _REJECTED):
                raise _LostRace from None
            if any(marker in text for marker in _UNREACHABLE):
                raise RemoteUnavailable(
                    f"git push to {redact(self.remote_url)} failed ({_detail(exc)}); "
                    "check the remote and its credentials"
                ) from None
            raise PermanentError(
                f"git push of {name} to {redact(self.remote_url)} was refused: {_detail(exc)}"
            ) from None

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

    def _backoff(self, state: RetryCallState) -> float:
        """``backoff_seconds`` doubled per lost race, times a jitter in [0.5, 1.5)."""
        jitter = 0.5 + random.random()  # noqa: S311 - jitter, not crypto
        return float(self.backoff_seconds * (2 ** (state.attempt_number - 1)) * jitter)

    def _push_once(
        self, *, branch: str, base: str, edit: Callable[[Path], None], message: str, attempt: int
    ) -> CommitOutcome:
        """One attempt from the remote's current tip; :class:`_LostRace` if the push lost."""
        start = self.remote_sha(branch) or self.remote_sha(base)
        if start is None:
            raise PermanentError(
                f"branch {base!r} does not exist on {redact(self.remote_url)}; "
                "create it or fix the environment's branch"
            )
        # Plumbing, not porcelain: the work tree is reset to ``start`` in place (only files
        # that differ are rewritten; no branch is checked out), the commit is built from the
        # index's tree with commit-tree and pushed by its sha.
        repo = self.repo
        repo.git.reset("--hard", "--quiet", start)
        repo.git.clean("-fdxq")
        edit(Path(repo.working_tree_dir or self.path))
        repo.git.add("--all")
        tree = str(repo.git.write_tree())
        if tree == str(repo.commit(start).tree.hexsha):
            return CommitOutcome(sha=start, committed=False, attempts=attempt)
        made = subprocess.run(
            ["git", f"--git-dir={repo.git_dir}", "commit-tree", tree, "-p", start],
            input=_commit_message(message).encode("utf-8"),
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        sha = made.stdout.decode("ascii").strip()
        self._push(branch, f"{sha}:refs/heads/{branch}")
        return CommitOutcome(sha=sha, committed=True, attempts=attempt)
