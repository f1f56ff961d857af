"""JSON as Go's encoding/json reads and writes it in KServe's router."""

from __future__ import annotations

import pytest

from controller.local.graph.go_json import GoJsonError, decode, encode, is_valid


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, b"1"),
        (0.5, b"0.5"),
        (-0.0, b"-0"),
        (1e20, b"100000000000000000000"),
        (1e21, b"1e+21"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),
        (1.5e-300, b"1.5e-300"),
        (123456.789, b"123456.789"),
    ],
)
def test_floats_are_written_in_gos_format(number: float, text: bytes) -> None:
    """Shortest digits; 'f' form between 1e-6 and 1e21, 'e' form outside, e-07 as e-7."""
    assert encode(number) == text


def test_integers_are_float64_after_a_round_trip() -> None:
    """An integer past 2**53 loses its low digits, as Go's interface{} decoding makes it."""
    assert encode(decode(b"12345678901234567890")) == b"12345678901234567000"


def test_objects_sort_keys_and_strings_are_html_safe() -> None:
    """Keys in order, compact, ``<>&`` and U+2028 escaped, other text as UTF-8."""
    assert encode(decode('{"b":"<&>\u2028é","a":[true,null]}'.encode())) == (
        '{"a":[true,null],"b":"\\u003c\\u0026\\u003e\\u2028é"}'.encode()
    )


def test_lone_surrogate_escape_becomes_the_replacement_character() -> None:
    """Go decodes an unpaired surrogate escape to U+FFFD."""
    assert encode(decode(b'"\\ud800"')) == '"\ufffd"'.encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "unexpected end of JSON input"),
        (b"[1,", "unexpected end of JSON input"),
        (b"nope", "invalid character 'n' looking for beginning of value"),
        (b"{} x", "invalid character 'x' after top-level value"),
        (b"1e400", "json: cannot unmarshal number 1e400 into Go value of type float64"),
    ],
)
def test_decode_refuses_what_go_refuses(body: bytes, message: str) -> None:
    """Not JSON, trailing data and out-of-range numbers are errors with Go's wording."""
    with pytest.raises(GoJsonError, match=message):
        decode(body)


@pytest.mark.parametrize("body", [b"NaN", b"Infinity", b"-Infinity", b" "])
def test_python_only_constants_are_not_valid(body: bytes) -> None:
    """Python's json accepts NaN and Infinity; Go's does not."""
    assert not is_valid(body)


def test_any_json_value_is_valid() -> None:
    """A scalar at the top is valid JSON."""
    assert all(is_valid(body) for body in (b'"a"', b"1", b"null", b" {} "))
