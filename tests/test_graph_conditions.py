"""GJSON conditions find what Go's tidwall/gjson finds, on KServe's own sample conditions.

KServe's switch sample writes its query values unquoted (``#(source==client)``), as Go's gjson
allows and gjson-py does not; the bridge quotes them. The cases below are KServe's README
input and conditions, the issue's regime condition, and the edges where the two differ.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.graph_samples import SWITCH_SAMPLE_INPUT

from controller.local.graph.conditions import condition_exists, gjson_py_condition

SAMPLE_CONDITIONS = (
    "[@this].#(source==client)",
    "instances.#(intval>10)",
    "instances.#(strval%*red-server*)",
)


@pytest.mark.parametrize(
    ("condition", "found"), zip(SAMPLE_CONDITIONS, (False, False, True), strict=True)
)
def test_sample_conditions_on_the_readme_input(condition: str, found: bool) -> None:
    """On the README's input only the pattern condition finds something (so single-3 answers)."""
    assert condition_exists(SWITCH_SAMPLE_INPUT, condition) is found


@pytest.mark.parametrize(
    ("document", "condition"),
    [
        ({"source": "client"}, "[@this].#(source==client)"),
        ({"instances": [{"intval": 11}]}, "instances.#(intval>10)"),
        ({"instances": [{"strval": "a-red-server-b"}]}, "instances.#(strval%*red-server*)"),
        ({"regime": "volatile"}, '[@this].#(regime=="volatile")'),
    ],
)
def test_sample_conditions_match_what_they_are_written_for(
    document: dict[str, Any], condition: str
) -> None:
    """Each sample condition, and the issue's, finds the input it was written for."""
    assert condition_exists(document, condition)


def test_unquoted_values_are_quoted_for_gjson_py() -> None:
    """Go's unquoted text values become JSON strings; numbers and JSON values stay."""
    assert [gjson_py_condition(c) for c in SAMPLE_CONDITIONS] == [
        '[@this].#(source=="client")',
        "instances.#(intval>10)",
        'instances.#(strval%"*red-server*")',
    ]
    assert gjson_py_condition('a.#(b=="x y")') == 'a.#(b=="x y")'
    assert gjson_py_condition("a.#(b==~true)") == "a.#(b==~true)"
    assert gjson_py_condition("a.#( b == hello world )") == 'a.#(b=="hello world")'


def test_nested_and_bracket_queries_are_rewritten_too() -> None:
    """A query inside a query's path, and Go's older ``#[...]`` form, are bridged as well."""
    assert gjson_py_condition("friends.#(nets.#(==fb))#") == 'friends.#(nets.#(=="fb"))#'
    assert gjson_py_condition("friends.#[last==Murphy]") == 'friends.#(last=="Murphy")'
    friends = {"friends": [{"last": "Craig", "nets": ["tw"]}, {"last": "Murphy", "nets": ["fb"]}]}
    assert condition_exists(friends, "friends.#[last==Murphy]")
    assert condition_exists(friends, "friends.#(nets.#(==fb))")
    assert not condition_exists(friends, "friends.#(nets.#(==ig))")


@pytest.mark.parametrize(
    "condition", ["", "missing", "instances.#(intval>0", "#(", "instances.5", "@nosuchmodifier"]
)
def test_malformed_or_missing_paths_do_not_exist(condition: str) -> None:
    """What Go's gjson would not find (never an error) is not found."""
    assert not condition_exists(SWITCH_SAMPLE_INPUT, condition)


def test_a_found_null_or_empty_result_exists() -> None:
    """A path to ``null`` exists, and so does an all-matches query that matched nothing
    (``[]``), as in Go."""
    assert condition_exists({"a": None}, "a")
    assert condition_exists({"a": [{"b": 1}]}, "a.#(b>5)#")
    assert not condition_exists({"a": [{"b": 1}]}, "a.#(b>5)")


def test_unquoted_null_compares_as_text_as_in_go() -> None:
    """Go compares ``==null`` as text: a string "null" matches, a JSON null does not."""
    assert condition_exists({"a": [{"b": "null"}]}, "a.#(b==null)")
    assert not condition_exists({"a": [{"b": None}]}, "a.#(b==null)")


def test_quoted_number_against_a_number_differs_from_go() -> None:
    """Known divergence: Go strips the quotes and compares numbers (``#(x>"0")`` matches 1);
    gjson-py compares a string with a number and finds nothing."""
    assert not condition_exists({"a": [{"x": 1}]}, 'a.#(x>"0")')
