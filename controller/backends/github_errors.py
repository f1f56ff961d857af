"""PyGithub's and ``requests``' failures as Sluice errors: which are worth another attempt,
which permission a refused endpoint needs (:data:`PERMISSIONS`), and the one line each becomes,
with the token redacted (see :mod:`controller.backends.github_forge`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import requests
from github import GithubException

from controller.backends.github_rate_limits import Attempts, RateLimit
from controller.errors import ConfigError, ForgeUnavailable, PermanentError, SluiceError
from controller.redact import redact

__all__ = [
    "CREDENTIALS_FIX",
    "PERMISSIONS",
    "REPOSITORY_FIX",
    "RetryableFailure",
    "endpoint_name",
    "github_message",
    "is_transient",
    "rate_limit_error",
    "required_permission",
    "translate_error",
    "tries_text",
]

#: What a GitHub App or fine-grained token needs for each endpoint Sluice calls: (method, path
#: under /repos/{owner}/{repo}, permission). Classic tokens need the ``repo`` scope for all.
PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", "", "metadata: read"),
    ("GET", "/pulls", "pull_requests: read"),
    ("POST", "/pulls", "pull_requests: write"),
    ("GET", "/pulls/{number}", "pull_requests: read"),
    ("PATCH", "/pulls/{number}", "pull_requests: write"),
    ("GET", "/pulls/{number}/reviews", "pull_requests: read"),
    ("GET", "/issues/{number}/comments", "pull_requests: read (or issues: read)"),
    ("POST", "/issues/{number}/comments", "pull_requests: write (or issues: write)"),
    ("POST", "/issues/{number}/labels", "pull_requests: write (or issues: write)"),
    ("POST", "/statuses/{sha}", "statuses: write"),
    ("POST", "/dispatches", "contents: write"),
)
_PERMISSION_PATTERNS = tuple(
    (method, re.compile(re.sub(r"\{\w+\}", "[^/]+", path)), permission)
    for method, path, permission in PERMISSIONS
)
_REPO_PATH = re.compile(r"/repos/[^/]+/[^/]+(?P<rest>/.*)?")
_PERMISSION_FIX = "grant it to the GitHub App or fine-grained token in SLUICE_GITHUB_TOKEN"
CREDENTIALS_FIX = "set SLUICE_GITHUB_TOKEN (or GITHUB_TOKEN) to a token with pull-requests: write"
REPOSITORY_FIX = "set SLUICE_GITHUB_REPOSITORY (or GITHUB_REPOSITORY) to owner/name"


class RetryableFailure(Exception):
    """An attempt failed in a way the next attempt may not."""


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: a 5xx, a broken connection, a timeout."""
    if isinstance(exc, RetryableFailure):
        return True
    if isinstance(exc, GithubException):
        # Not 429 or rate limits: waiting for a reset can take an hour; say so instead.
        return exc.status >= 500
    # ConnectTimeout is both; RetryError cannot happen with retry=None but means the same.
    transport = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    )
    return isinstance(exc, (*transport, requests.exceptions.RetryError))


def translate_error(
    exc: Exception,
    what: str,
    tries: int,
    *,
    api_url: str,
    repository: str,
    endpoint: tuple[str, str] | None,
) -> SluiceError:
    """``exc``, raised by PyGithub or ``requests`` after ``tries`` tries of ``what``, as one
    Sluice error naming the endpoint and the fix, the token redacted."""
    where = redact(api_url)
    if isinstance(exc, GithubException):
        return _translate_answer(
            exc, what, tries, api_url=api_url, repository=repository, endpoint=endpoint
        )
    if isinstance(exc, RetryableFailure):
        return ForgeUnavailable(f"GitHub at {where} {exc} while {what} ({tries_text(tries)})")
    reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if not is_transient(exc):  # a malformed URL, an unsupported scheme
        return ConfigError(
            f"GitHub API URL {where} cannot be used ({reason}): set SLUICE_GITHUB_API_URL "
            "to https://api.github.com or https://HOST/api/v3"
        )
    return ForgeUnavailable(
        f"GitHub at {where} is unreachable while {what}: {reason} ({tries_text(tries)}); "
        "check SLUICE_GITHUB_API_URL and the network"
    )


def _translate_answer(
    exc: GithubException,
    what: str,
    tries: int,
    *,
    api_url: str,
    repository: str,
    endpoint: tuple[str, str] | None,
) -> SluiceError:
    where = redact(api_url)
    status = exc.status
    detail = redact(f"{status} {github_message(exc)}")
    if status == 403:  # rate limits never get here: _attempt waits them out or fails
        permission = required_permission(endpoint)
        needs = (
            f"the token needs {permission} on {repository}; {_PERMISSION_FIX}"
            if permission is not None
            else f"the token lacks a permission this needs: {CREDENTIALS_FIX}"
        )
        return ConfigError(
            f"GitHub refused {endpoint_name(endpoint)} while {what} ({detail}): {needs}"
        )
    if status == 401:
        return ConfigError(
            f"GitHub rejected the token for {repository} ({detail}): {CREDENTIALS_FIX}"
        )
    if status >= 500:
        return ForgeUnavailable(
            f"GitHub at {where} answered {detail} while {what} ({tries_text(tries)})"
        )
    return PermanentError(f"GitHub answered {detail} while {what} in {repository}")


def rate_limit_error(
    what: str,
    limit: RateLimit,
    attempts: Attempts,
    *,
    repository: str,
    endpoint: tuple[str, str] | None,
    max_wait: float,
) -> ForgeUnavailable:
    """The one line for a rate limit that asks for a longer wait than is left of ``max_wait``."""
    answer = limit.answer
    detail = redact(f"{answer.status} {github_message(answer)}")
    if limit.resets_at is not None:
        at = datetime.fromtimestamp(limit.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resets = f"the limit resets at {at} (in {limit.wait:.0f} s)"
    else:
        resets = f"GitHub asks to wait {limit.wait:.0f} s"
    waited = f", {attempts.rate_limit_waited:.0f} s already waited" if attempts.rate_limited else ""
    return ForgeUnavailable(
        f"GitHub is rate-limiting {endpoint_name(endpoint)} ({detail}) while {what} in "
        f"{repository}: {resets}, beyond the {max_wait:.0f} s Sluice "
        f"waits{waited}; run again after that"
    )


def required_permission(endpoint: tuple[str, str] | None) -> str | None:
    """The permission ``endpoint`` (method, path) needs (:data:`PERMISSIONS`)."""
    match = _REPO_PATH.fullmatch(endpoint[1]) if endpoint else None
    if endpoint is None or match is None:
        return None
    rest = match.group("rest") or ""
    for method, pattern, permission in _PERMISSION_PATTERNS:
        if method == endpoint[0] and pattern.fullmatch(rest):
            return permission
    return None


def endpoint_name(endpoint: tuple[str, str] | None) -> str:
    """``endpoint`` as "POST /repos/o/r/pulls", or a generic phrase when none was recorded."""
    return f"{endpoint[0]} {endpoint[1]}" if endpoint else "a GitHub API request"


def github_message(exc: GithubException) -> str:
    """GitHub's message and, for a 422, what each validation error says."""
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc.message or "no message")
    details = []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            field = ".".join(str(error[key]) for key in ("resource", "field") if key in error)
            details.append(str(error.get("message") or f"{field} {error.get('code', 'invalid')}"))
        else:
            details.append(str(error))
    return f"{message}: {'; '.join(details)}" if details else message


def tries_text(tries: int) -> str:
    """How many tries an error line reports ("tried once", "tried 3 times")."""
    return "tried once" if tries == 1 else f"tried {tries} times"
