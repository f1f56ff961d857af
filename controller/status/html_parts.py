"""What the parts of the status page share: escaping, and the anchor of a release's section that
the summary table and a graph's members link to."""

from __future__ import annotations

import html

__all__ = ["escape", "release_anchor"]


def escape(value: object) -> str:
    """``value`` as text safe in an element or a quoted attribute (names come from Git)."""
    return html.escape(str(value), quote=True)


def release_anchor(environment: object, model: object) -> str:
    """The ``id`` of a release's section on the page."""
    return f"{environment}-{model}"
