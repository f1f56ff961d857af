"""GJSON conditions, evaluated as KServe's router evaluates them with Go's tidwall/gjson.

A Switch step is taken, and a Sequence step run, when ``gjson.GetBytes(body, condition)
.Exists()``: the path finds something in the JSON body. Sluice evaluates the path with gjson-py
(a Python implementation of the same syntax) on the decoded body, and bridges what differs:

- Go's gjson never fails: a path that is malformed, or that finds nothing, does not exist.
  gjson-py raises for both, so any error of it is "does not exist";
- Go's gjson takes an unquoted query value as text, so ``#(source==client)`` and
  ``#(strval%*red-server*)`` (KServe's own samples) compare with the string ``client`` and the
  pattern ``*red-server*``. gjson-py wants a JSON value there and refuses both; the value is
  quoted before gjson-py reads it (a number, ``true``, ``false``, a quoted string or a ``~``
  value is left as written);
- Go's gjson reads ``#[...]`` as ``#(...)`` (the old form of a query); gjson-py knows only the
  second, so the first is rewritten.

What stays different is typed comparison: Go compares the query's text with each element by
the *element's* type (a string element with ``#(x>10)`` compares text with text, a number
element with ``#(x=="0")`` compares numbers), where gjson-py compares JSON values of the same
type only, so those mixed cases do not match here. ``~*``, ``~null`` and JSON Lines paths
(``..``) of newer Go versions are not supported by gjson-py 1.0.0 and do not match.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import gjson

__all__ = ["condition_exists", "gjson_py_condition"]

#: A JSON number, which both implementations compare as a number.
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_AS_WRITTEN = ("true", "false")
# Go's query operators, longest first (``==`` is Go's ``=``).
_OPERATORS = ("!=", "!%", "<=", ">=", "==", "<", ">", "=", "%")


def condition_exists(document: Any, condition: str) -> bool:
    """Whether ``condition`` finds anything in ``document`` (a decoded JSON value), as Go's
    ``gjson.Get(json, condition).Exists()`` would: never an error."""
    if not condition:
        return False  # Go's gjson finds nothing at the empty path of an object or array
    try:
        gjson.get(document, gjson_py_condition(condition))
    except Exception:  # Go's gjson cannot fail: any error of gjson-py is "not found"
        return False
    return True


@lru_cache(maxsize=1024)
def gjson_py_condition(condition: str) -> str:
    """``condition`` with Go-only forms of its queries rewritten for gjson-py: unquoted text
    values quoted, ``#[...]`` as ``#(...)``. Anything it cannot make sense of is left as
    written, and gjson-py's refusal of it is "not found" as it is for Go."""
    out: list[str] = []
    i = 0
    while i < len(condition):
        char = condition[i]
        if char == "\\":
            out.append(condition[i : i + 2])
            i += 2
        elif char == "#" and condition[i + 1 : i + 2] in ("(", "["):
            end = _query_end(condition, i)
            if end < 0:
                out.append(condition[i:])
                break
            out.append("#(" + _query(condition, i + 2, end) + ")")
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _query_end(text: str, start: int) -> int:
    """The index of the bracket closing the query opened at ``text[start:start + 2]`` (Go's
    ``parseQuery`` scan: brackets of both kinds nest, quotes and backslashes escape), or -1."""
    depth, i = 1, start + 2
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 1
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth == 0:
                return i
        elif char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        i += 1
    return -1


def _query(text: str, start: int, end: int) -> str:
    """The inside of one query, rewritten: its path (which may hold queries of its own) and,
    when it compares, its operator and value."""
    operator_at = _operator_position(text, start, end)
    if operator_at < 0:
        return gjson_py_condition(text[start:end].strip())
    path = gjson_py_condition(text[start:operator_at].strip())
    rest = text[operator_at:end].strip()
    operator = next((op for op in _OPERATORS if rest.startswith(op)), "")
    if not operator:  # "!" alone: no operator either implementation reads
        return text[start:end]
    return f"{path}{operator}{_value(rest[len(operator) :].strip())}"


def _operator_position(text: str, start: int, end: int) -> int:
    """Where the query's operator starts: the first ``!=<>%`` at the query's own depth, before
    any nested bracket or quote moves it (Go's rule), or -1."""
    depth, i = 1, start
    while i < end:
        char = text[i]
        if depth == 1 and char in "!=<>%":
            return i
        if char == "\\":
            i += 1
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == '"':
            i += 1
            while i < end and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        i += 1
    return -1


def _value(value: str) -> str:
    """A query value as gjson-py reads it with Go's meaning: text unless it is JSON already."""
    if value.startswith(('"', "~")) or value in _AS_WRITTEN or _JSON_NUMBER.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False)
