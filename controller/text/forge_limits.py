"""GitHub's size limits on what Sluice writes, and fitting text into them.

GitHub refuses a pull request or issue comment body longer than 65,536 characters and a commit
status description longer than 140 with 422 "Validation Failed", and nothing is written. Sluice
never sends either: the model card trims its own sections first
(:mod:`controller.proposals.model_card`), and :func:`fit_body` is the last resort for any body,
keeping its start, closing an open code fence, saying that it was trimmed and keeping the hidden
``<!-- sluice:... -->`` marker that ends Sluice's cards and comments (tools find them by it).
"""

from __future__ import annotations

import re

__all__ = [
    "BODY_LIMIT",
    "STATUS_DESCRIPTION_LIMIT",
    "fit_body",
    "fit_status_description",
    "trimmed_note",
]

#: GitHub's cap on pull request, issue and issue comment bodies, in characters.
BODY_LIMIT = 65_536
#: GitHub's cap on a commit status description, in characters.
STATUS_DESCRIPTION_LIMIT = 140

_MARKER = re.compile(r"(?:\n*<!--[^\n]*-->[ \t]*)+\n*\Z")
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})")


def trimmed_note(what: str, where: str = "") -> str:
    """The one-line notice a trimmed body carries: what was cut and where it is in full."""
    note = f"> **Trimmed** to fit GitHub's {BODY_LIMIT:,}-character limit: {what}."
    return f"{note} {where}" if where else note


def fit_status_description(description: str, limit: int = STATUS_DESCRIPTION_LIMIT) -> str:
    """``description`` on one line, cut with an ellipsis to at most ``limit`` characters."""
    text = " ".join(description.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fit_body(body: str, *, note: str | None = None, limit: int = BODY_LIMIT) -> str:
    """``body`` unchanged if it fits in ``limit`` characters; otherwise its start, cut at a line,
    any open code fence closed, then ``note`` (a generic notice by default) and the trailing
    hidden marker comment, if the body ended with one."""
    if len(body) <= limit:
        return body
    notice = note or trimmed_note("the rest of this text was cut")
    marker = _MARKER.search(body)
    tail = marker.group(0).strip("\n") if marker else ""
    text = body[: marker.start()] if marker else body
    end = f"\n\n{notice.rstrip()}\n" + (f"\n{tail}\n" if tail else "")
    budget = limit - len(end) - 16  # room for a closing fence
    if budget <= 0:
        return body[:limit]
    head = text[:budget]
    newline = head.rfind("\n")
    if newline > budget // 2:
        head = head[:newline]
    fence = _open_fence(head)
    closing = f"\n{fence}" if fence else ""
    fitted = head.rstrip("\n") + closing + end
    return fitted if len(fitted) <= limit else fitted[:limit]


def _open_fence(text: str) -> str | None:
    """The fence of a code block ``text`` leaves open, if any (CommonMark's rules, simply)."""
    opened: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        run = match.group(1)
        if opened is None:
            opened = run
        elif run[0] == opened[0] and len(run) >= len(opened) and not line.strip()[len(run) :]:
            opened = None
    return opened
