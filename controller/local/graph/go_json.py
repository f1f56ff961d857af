"""JSON read and written as Go's ``encoding/json`` does it in KServe's router.

Where the router re-encodes a body (an Ensemble's merged answer, a Hard step's answer that
ends an Ensemble, a Sequence request whose ``predictions`` became ``instances``) it has decoded
it into Go's ``interface{}`` and marshals it back, so clients see Go's form, not the model's:

- every number became a ``float64``: ``1.0`` is written ``1``, an integer past 2**53 loses its
  low digits, ``1e-7`` is written ``1e-7`` and ``1e21`` ``1e+21`` (Go's ``'f'`` format between
  1e-6 and 1e21, ``'e'`` outside);
- object keys are sorted (Go marshals maps in key order), output is compact;
- ``<``, ``>``, ``&``, U+2028 and U+2029 in strings are escaped as ``\\u003c`` ... (Go's HTML-safe
  default), and invalid UTF-8 or a lone surrogate escape becomes U+FFFD.

:func:`decode` is ``json.Unmarshal`` into ``interface{}`` (strict JSON: no NaN or Infinity,
nothing after the value); :func:`encode` is ``json.Marshal`` of what it returns;
:func:`is_valid` is ``json.Valid``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

__all__ = ["GoJsonError", "decode", "encode", "encode_string", "is_valid", "type_name"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_HTML_ESCAPES["\u2029"] = "\\u2029"
_HTML = re.compile("[<>&\u2028\u2029]")


class GoJsonError(ValueError):
    """The body is not JSON Go would decode (the message is close to Go's)."""


def _number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise GoJsonError(f"json: cannot unmarshal number {text} into Go value of type float64")
    return value


def _no_constant(text: str) -> Any:
    raise GoJsonError(f"invalid character '{text[0]}' looking for beginning of value")


def decode(body: bytes) -> Any:
    """``json.Unmarshal(body, &v)`` with ``v interface{}``: numbers as floats."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        raise GoJsonError("unexpected end of JSON input")
    try:
        return json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = text[exc.pos] if exc.pos < len(text) else ""
        if not where:
            raise GoJsonError("unexpected end of JSON input") from None
        raise GoJsonError(f"invalid character {where!r} {_context(exc.msg)}") from None
    except RecursionError:
        raise GoJsonError("exceeded max depth") from None


def _context(message: str) -> str:
    """Go's wording for where the parser was (Python's messages differ)."""
    if message.startswith("Extra data"):
        return "after top-level value"
    if "property name" in message:
        return "looking for beginning of object key string"
    return "looking for beginning of value"


def is_valid(body: bytes) -> bool:
    """``json.Valid(body)`` (and gjson's ``ValidBytes``): one JSON value and nothing else."""
    try:
        decode(body)
    except GoJsonError:
        return False
    return True


def type_name(value: Any) -> str:
    """Go's name of a decoded JSON value's kind, as its unmarshal errors say it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def encode(value: Any) -> bytes:
    """``json.Marshal`` of a value :func:`decode` returned (dicts, lists, str, float, bool,
    None)."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _float(float(value))
    if isinstance(value, str):
        return encode_string(value)
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        return "{" + ",".join(f"{encode_string(k)}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def encode_string(text: str) -> str:
    """A Go-marshalled JSON string, quotes included."""
    quoted = json.dumps(_LONE_SURROGATE.sub("\ufffd", text), ensure_ascii=False)
    return _HTML.sub(lambda m: _HTML_ESCAPES[m.group()], quoted)


def _float(number: float) -> str:
    """Go's ``floatEncoder`` for a float64: shortest digits, ``'f'`` or ``'e'`` form."""
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"json: unsupported value: {number}")
    magnitude = abs(number)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(number)  # shortest digits in exponent form, as Go's 'e' with -1
        mantissa, _, exponent = text.partition("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        if sign == "-" and len(digits) == 1:
            return f"{mantissa}e-{digits}"  # Go cleans e-07 to e-7 (and only that)
        return f"{mantissa}e{sign}{digits.zfill(2)}"
    text = format(Decimal(repr(number)), "f")
    return text[:-2] if text.endswith(".0") else text
