"""``eval "$(sluice local env)"`` as the README's console blocks write it, and its output read
as the shell would: for the tests that run a README section command by command."""

from __future__ import annotations

import shlex

__all__ = ["EVAL_ENV", "exports"]

EVAL_ENV = 'eval "$(sluice local env)"'


def exports(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines, unquoted as the shell would."""
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        found[name] = value
    return found
