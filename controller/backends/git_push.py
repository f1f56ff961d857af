"""Pushing to the remote: what a refusal means, and retrying a push that lost a race.

A push the remote refuses because it moved first (non-fast-forward, a stale lease) is a lost
race, :class:`LostRace`, and the write is done again from the new tip after a jittered
exponential backoff, a bounded number of times (:func:`retry_lost_races`). An unreachable
remote is :class:`RemoteUnavailable`; any other refusal (a hook, a protected branch) is a
:class:`PermanentError` with everything git said, redacted.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
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
from controller.redact import redact

__all__ = ["LostRace", "git_failure", "push", "retry_lost_races"]

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
_DETAIL_LIMIT = 1000

_T = TypeVar("_T")


class LostRace(Exception):
    """The push was refused because the remote moved; retried from its new tip."""


def _unwrap(text: object, stream: str) -> str:
    """GitPython's ``"\n  stderr: '...'"`` wrapper removed: what git itself printed."""
    value = str(text or "").strip()
    prefix = f"{stream}: '"
    if value.startswith(prefix):
        value = value[len(prefix) :]
        value = value.removesuffix("'")
    return value


def git_failure(exc: GitCommandError) -> str:
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


def push(repo: Repo, remote_url: str, name: str, refspec: str, *, lease: str | None = None) -> None:
    """Push ``refspec`` to origin (with ``--force-with-lease=<lease>`` when given):
    :class:`LostRace` when the remote moved first, :class:`RemoteUnavailable` when it
    cannot be reached, :class:`PermanentError` naming ``name`` for any other refusal."""
    options = [f"--force-with-lease={lease}"] if lease is not None else []
    try:
        repo.git.push("--porcelain", *options, "origin", refspec)
    except GitCommandError as exc:
        text = f"{exc.stdout}\n{exc.stderr}".lower()
        if any(marker in text for marker in _REJECTED):
            raise LostRace from None
        if any(marker in text for marker in _UNREACHABLE):
            raise RemoteUnavailable(
                f"git push to {redact(remote_url)} failed ({git_failure(exc)}); "
                "check the remote and its credentials"
            ) from None
        raise PermanentError(
            f"git push of {name} to {redact(remote_url)} was refused: {git_failure(exc)}"
        ) from None


def retry_lost_races(
    attempt: Callable[[int], _T],
    lost: str,
    *,
    sync: Callable[[], None],
    max_attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
) -> _T:
    """``attempt(number)`` until it does not lose a push race (:class:`LostRace`): each retry
    calls ``sync`` first and comes after a jittered exponential backoff; every other failure
    ends the write at once. :class:`GitConflict` with ``lost`` after ``max_attempts``."""
    tries = itertools.count(1)

    def once() -> _T:
        number = next(tries)
        if number > 1:
            sync()
        return attempt(number)

    def backoff(state: RetryCallState) -> float:
        """``backoff_seconds`` doubled per lost race, times a jitter in [0.5, 1.5)."""
        jitter = 0.5 + random.random()  # noqa: S311 - jitter, not crypto
        return float(backoff_seconds * (2 ** (state.attempt_number - 1)) * jitter)

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=backoff,
        retry=retry_if_exception_type(LostRace),
        sleep=sleep,
    )
    try:
        return retrying(once)
    except RetryError:
        raise GitConflict(lost) from None
