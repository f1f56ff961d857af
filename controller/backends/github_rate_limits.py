"""GitHub's rate limits, waited out by the forge itself: which answers are rate-limited (429,
or 403 with the limit exhausted), how long each asks to wait, and what the attempts of one
operation have waited so far. The reasoning is in :mod:`controller.backends.github_forge`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from github import GithubException, RateLimitExceededException

__all__ = [
    "DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS",
    "Attempts",
    "RateLimit",
    "is_rate_limited",
    "rate_limit_of",
]

#: The longest one forge operation waits for GitHub's rate limits, in all, by default.
DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS = 60.0
#: The wait for a secondary rate limit that names no time (GitHub: "at least one minute").
_SECONDARY_WAIT_SECONDS = 60.0


@dataclass
class Attempts:
    """What earlier attempts of one call did, so a retry can tell its own effects apart."""

    number: int = 0
    tried_create: bool = False
    #: Seconds spent waiting for rate limits, and how many times.
    rate_limit_waited: float = 0.0
    rate_limited: int = 0
    #: The last rate-limited answer's wait, while it is being waited out (or refused).
    rate_limit: RateLimit | None = None


@dataclass(frozen=True)
class RateLimit:
    """A rate-limited answer: how long GitHub asks to wait, and when its limit resets."""

    wait: float
    resets_at: float | None
    answer: GithubException


def is_rate_limited(exc: BaseException) -> bool:
    """Whether ``exc`` is GitHub refusing a request for its rate limits (429, or 403 with the
    limit exhausted), which changed nothing."""
    if not isinstance(exc, GithubException) or exc.status not in (403, 429):
        return False
    remaining = (exc.headers or {}).get("x-ratelimit-remaining")
    return exc.status == 429 or isinstance(exc, RateLimitExceededException) or remaining == "0"


def rate_limit_of(exc: Exception, earlier: int) -> RateLimit | None:
    """How long a rate-limited answer asks to wait (GitHub's documented order), or None if
    ``exc`` is not one; ``earlier`` rate-limited answers in this operation double the default."""
    if not isinstance(exc, GithubException) or not is_rate_limited(exc):
        return None
    headers = exc.headers or {}
    remaining = headers.get("x-ratelimit-remaining")
    retry_after = _seconds(headers.get("retry-after"))
    reset = _seconds(headers.get("x-ratelimit-reset"))
    now = time.time()
    if retry_after is not None:
        wait = retry_after
        resets_at: float | None = now + retry_after
    elif remaining == "0" and reset is not None:
        wait = reset - now + 1  # the reset is a whole second: wait into the next one
        resets_at = reset
    else:
        wait, resets_at = _SECONDARY_WAIT_SECONDS * 2**earlier, None
    return RateLimit(max(wait, 1.0), resets_at, exc)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # Retry-After may be an HTTP date; GitHub sends seconds
        return None
