"""The first problem a JSON schema finds in a document, ready for a one-line error: where
(a dotted path), what, how many more, and the error itself for a fix that depends on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the caller's validator brings jsonschema; naming its types needs none
    from jsonschema import Draft7Validator, ValidationError

__all__ = ["SchemaProblem", "first_schema_problem"]


@dataclass(frozen=True)
class SchemaProblem:
    """The first error by path, and a suffix counting the others (empty when it is alone)."""

    where: str
    message: str
    more: str
    error: ValidationError

    def line(self, kind: str) -> str:
        """``KIND where: message (and N more)``, the middle of a one-line error."""
        return f"{kind} {self.where}: {self.message}{self.more}"


def first_schema_problem(
    validator: Draft7Validator, document: Mapping[str, Any]
) -> SchemaProblem | None:
    """The problem at the first path ``validator`` reports in ``document``, or None."""
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    return SchemaProblem(
        where=".".join(str(part) for part in first.absolute_path) or "(document)",
        message=first.message,
        more=f" (and {len(errors) - 1} more)" if len(errors) > 1 else "",
        error=first,
    )
