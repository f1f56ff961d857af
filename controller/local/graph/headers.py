"""The request headers KServe's InferenceGraph router passes on to its steps.

Its ``router.headers.propagate`` setting (the ``inferenceservice-config`` ConfigMap, given to the
router as ``PROPAGATE_HEADERS``) lists regular expressions; a header whose canonical name one
matches is sent with every step's request. KServe's default lists ``Authorization`` alone, so a
client's ``X-Request-Id`` reaches the members only when the setting adds it.

No gjson here: the local runtime reads the default without the ``graph`` extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

__all__ = ["DEFAULT_PROPAGATED_HEADERS", "canonical_header", "propagated_headers"]

#: KServe's default ``router.headers.propagate``.
DEFAULT_PROPAGATED_HEADERS = ("Authorization",)


def canonical_header(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``x-request-id`` becomes ``X-Request-Id``."""
    if not name or any(not (c.isascii() and (c.isalnum() or c in "-!#$%&'*+.^_`|~")) for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


def propagated_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    patterns: Sequence[str] = DEFAULT_PROPAGATED_HEADERS,
) -> dict[str, str]:
    """The headers a step receives: those whose canonical name a pattern matches anywhere
    (Go's ``MatchString``), plus ``Content-Type: application/json`` unless one was matched."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    compiled = _compiled(tuple(patterns))
    out: dict[str, str] = {}
    for name, value in items:
        canonical = canonical_header(name)
        if any(pattern.search(canonical) for pattern in compiled):
            out.setdefault(canonical, value)
    out.setdefault("Content-Type", "application/json")
    return out
