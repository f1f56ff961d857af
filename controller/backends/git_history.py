"""A remote branch's history as of the last fetch: the commits that changed a path.

Each function walks back from a commit the caller names by sha (the branch's tip as of the
last fetch), so its answer never changes and the workspace keeps it.

Each change is read with its ``Sluice-*`` trailers (:class:`~controller.ports.ChangeInfo`);
``--first-parent`` throughout, so on a merged proposal the merge commit (merge time) is the
one that changed the pin.
"""

from __future__ import annotations

from git import GitCommandError, Repo

from controller.ports import ChangeInfo

__all__ = ["changes", "last_change", "log_subjects"]

_CHANGE_FORMAT = "%H%x1f%ct%x1f%(trailers:only,unfold,separator=%x1e)"


def _change(entry: str) -> ChangeInfo:
    """One commit of :data:`_CHANGE_FORMAT`: sha, commit time, trailers."""
    sha, when, trailers = [*entry.strip().split("\x1f"), "", ""][:3]
    parsed = {}
    for line in trailers.split("\x1e"):
        key, sep, value = line.partition(":")
        if sep:
            parsed[key.strip()] = value.strip()
    return ChangeInfo(sha=sha, time=float(when), trailers=parsed)


def last_change(repo: Repo, tip: str, path: str) -> ChangeInfo | None:
    """The last commit up to ``tip`` that changed ``path``: sha, commit time and its
    ``Sluice-*`` trailers (None when no commit touched it)."""
    try:
        out = str(
            repo.git.log(
                "-1",
                "--first-parent",
                f"--format={_CHANGE_FORMAT}",
                tip,
                "--",
                path,
            )
        )
    except GitCommandError:
        return None
    if not out.strip():
        return None
    return _change(out)


def changes(repo: Repo, tip: str, path: str, limit: int = 30) -> list[ChangeInfo]:
    """The last ``limit`` first-parent commits up to ``tip`` that changed ``path``, newest
    first, as :func:`last_change` reads one."""
    try:
        out = str(
            repo.git.log(
                f"-{limit}",
                "--first-parent",
                f"--format={_CHANGE_FORMAT}%x1d",
                tip,
                "--",
                path,
            )
        )
    except GitCommandError:
        return []
    return [_change(entry) for entry in out.split("\x1d") if entry.strip()]


def log_subjects(repo: Repo, since: str | None, until: str, path: str) -> list[str]:
    """``<short sha> <subject>`` of each first-parent commit after ``since`` up to ``until``
    that changed ``path``, oldest first (``since`` None: ``until``'s own, none for a root
    commit)."""
    since = since or f"{until}~1"
    try:
        out = str(
            repo.git.log(
                "--first-parent", "--reverse", "--format=%h %s", f"{since}..{until}", "--", path
            )
        )
    except GitCommandError:
        return []
    return [line for line in out.splitlines() if line]
