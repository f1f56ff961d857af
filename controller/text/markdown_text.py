"""Markdown building blocks for the bodies Sluice writes (pull requests, comments): text that
stays on one line or inside a table cell, code fences that nothing inside can close, and link
targets that cannot end a link early or leak credentials."""

from __future__ import annotations

import re

from controller.redact import redact

__all__ = ["fenced_block", "is_web_url", "link_target", "one_line", "table_cell"]


def one_line(text: str) -> str:
    """``text`` with every run of white space, newlines included, as one space."""
    return " ".join(text.split())


def table_cell(text: str) -> str:
    """Text safe inside a table cell: pipes escaped, on one line."""
    return one_line(text).replace("|", "\\|")


def fenced_block(language: str, text: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def is_web_url(url: str) -> bool:
    """Whether ``url`` is an http(s) address a reader can open."""
    return url.startswith(("http://", "https://"))


def link_target(url: str) -> str:
    """A URL that cannot end a Markdown link early, with any credentials in it masked."""
    return redact(url).replace(" ", "%20").replace("(", "%28").replace(")", "%29")
