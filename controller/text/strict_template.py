"""Strict ``string.Template`` filling: a variable without a value, or a value without a
variable, is an error rather than text with a hole in it (or a value silently dropped)."""

from __future__ import annotations

from collections.abc import Mapping
from string import Template

__all__ = ["fill_template"]


def fill_template(template: Template, values: Mapping[str, object]) -> str:
    """Substitute ``values`` into ``template``; every variable needs a value and every value a
    variable, otherwise :class:`ValueError` names them."""
    wanted = set(template.get_identifiers())
    missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
    if missing or unused or not template.is_valid():
        raise ValueError(
            f"template variables without values: {missing or 'none'}; "
            f"values without variables: {unused or 'none'}"
        )
    return template.substitute(values)
