"""A graph change as a canary: the pure transformations between a graph, its canary form and back.

The example graph (``models/market_regime/overlay/inference-graph.yaml``) is changed as a person
would change it: another condition on the Switch's calm branch, and one more member in the black
swans' Ensemble. Its canary form must be a graph KServe admits, route W % to the new graph and
the rest to the old one, and come back to either graph exactly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError, ManifestInvalid
from controller.manifests.graph_canary import (
    CANARY_ANNOTATION,
    WEIGHT_ANNOTATION,
    GraphCanary,
    canary_form,
    canary_state,
    promoted,
    restored,
    spec_digest,
    with_canary_weight,
)
from controller.manifests.graph_file import dump_graph, load_graph, spec_diff
from controller.manifests.inference_graph import validate_inferencegraph

EXAMPLE = Path(__file__).resolve().parents[1] / "models/market_regime/overlay/inference-graph.yaml"


def plain(document: Any) -> Any:
    return json.loads(json.dumps(document))


def example() -> Any:
    return load_graph(EXAMPLE.read_text(), source=str(EXAMPLE))


def changed(graph: Any) -> Any:
    """A black swan whenever the classifier gives it more than 20%; a fourth Ensemble member."""
    new = copy.deepcopy(graph)
    black_swan = new["spec"]["nodes"]["by-regime"]["steps"][2]
    black_swan["condition"] = "instances.#(p_black_swan>0.2)"
    new["spec"]["nodes"]["blend-inputs"]["steps"].append(
        {"name": "classifier-again", "serviceName": "market-regime-classifier"}
    )
    return new


def test_the_canary_form_splits_at_the_root_and_holds_both_graphs() -> None:
    old, new = plain(example()), plain(changed(example()))
    form = canary_form(old, new, 10)
    nodes = form["spec"]["nodes"]
    assert nodes["root"] == {
        "routerType": "Splitter",
        "steps": [
            {"name": "stable", "nodeName": "stable", "weight": 90},
            {"name": "canary", "nodeName": "canary", "weight": 10},
        ],
    }
    assert list(nodes) == [
        "root", "stable", "by-regime", "blend", "blend-inputs",
        "canary", "canary-by-regime", "canary-blend", "canary-blend-inputs",
    ]  # fmt: skip
    assert nodes["stable"] == old["spec"]["nodes"]["root"]
    assert nodes["by-regime"] == old["spec"]["nodes"]["by-regime"]
    assert nodes["canary"]["steps"][1]["nodeName"] == "canary-by-regime"
    assert nodes["canary-by-regime"]["steps"][2]["nodeName"] == "canary-blend"
    assert nodes["canary-blend"]["steps"][0]["nodeName"] == "canary-blend-inputs"
    assert len(nodes["canary-blend-inputs"]["steps"]) == 4
    assert form["metadata"]["annotations"] == {
        **old["metadata"].get("annotations", {}),  # the graph's own, kept
        CANARY_ANNOTATION: spec_digest(new),
        WEIGHT_ANNOTATION: "10",
    }
    assert canary_state(form) == GraphCanary(spec_digest(new), 10)
    validate_inferencegraph(form, source="canary form")  # KServe's rules and Sluice's
    assert old == plain(example())  # the inputs are left as they were


def test_promoted_is_the_new_graph_and_restored_the_old_one() -> None:
    old, new = plain(example()), plain(changed(example()))
    form = with_canary_weight(canary_form(old, new, 10), 50)
    assert promoted(form) == new
    assert restored(form) == old
    assert list(promoted(form)["spec"]["nodes"]) == list(new["spec"]["nodes"])
    assert canary_state(promoted(form)) is None


def test_the_weight_moves_both_splitter_steps_and_the_annotation() -> None:
    form = with_canary_weight(canary_form(plain(example()), plain(changed(example())), 10), 50)
    assert [s["weight"] for s in form["spec"]["nodes"]["root"]["steps"]] == [50, 50]
    assert form["metadata"]["annotations"][WEIGHT_ANNOTATION] == "50"
    validate_inferencegraph(form, source="canary form")


def test_a_ruamel_round_trip_keeps_the_comments_and_quotes_the_weight() -> None:
    text = EXAMPLE.read_text().replace(
        "    by-regime:\n", "    by-regime:  # one branch a regime\n", 1
    )
    old = load_graph(text, source="graph.yaml")
    form = canary_form(old, changed(old), 10)
    written = dump_graph(form)
    assert "by-regime:  # one branch a regime" in written
    assert 'sluice.dev/graph-canary-weight: "10"' in written
    back = dump_graph(restored(load_graph(written, source="canary.yaml")))
    assert back == dump_graph(old)


@pytest.mark.parametrize("weight", [0, 100, -1])
def test_a_weight_outside_1_to_99_is_refused(weight: int) -> None:
    with pytest.raises(InputError, match="must be 1 to 99"):
        canary_form(plain(example()), plain(changed(example())), weight)


def test_a_graph_already_in_canary_form_is_not_canaried_again() -> None:
    form = canary_form(plain(example()), plain(changed(example())), 10)
    with pytest.raises(InputError, match="already in canary form"):
        canary_form(form, plain(example()), 10)


def test_a_graph_alone_cannot_be_promoted_stepped_or_restored() -> None:
    for change in (promoted, restored, lambda g: with_canary_weight(g, 50)):
        with pytest.raises(InputError, match=r"is not in canary form .*propose a change first"):
            change(plain(example()))


def test_node_names_that_the_canary_form_uses_are_refused() -> None:
    old = plain(example())
    old["spec"]["nodes"]["canary-blend"] = old["spec"]["nodes"].pop("blend")
    old["spec"]["nodes"]["by-regime"]["steps"][2]["nodeName"] = "canary-blend"
    with pytest.raises(InputError, match="node 'canary-blend' clashes"):
        canary_form(old, plain(changed(example())), 10)


def test_a_change_outside_the_nodes_is_refused() -> None:
    new = plain(changed(example()))
    new["spec"]["timeout"] = 30
    with pytest.raises(InputError, match=r"changes spec\.timeout, which one router serves"):
        canary_form(plain(example()), new, 10)


def test_the_digest_ignores_order_and_formatting() -> None:
    graph = plain(example())
    reordered = {**graph, "spec": {"nodes": dict(reversed(graph["spec"]["nodes"].items()))}}
    assert spec_digest(graph) == spec_digest(reordered) == spec_digest(example())
    assert spec_digest(graph) != spec_digest(plain(changed(example())))
    assert len(spec_digest(graph)) == 10


def test_the_spec_diff_shows_only_the_change() -> None:
    diff = spec_diff(example(), changed(example()), old_label="a", new_label="b")
    changed_lines = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert changed_lines == [
        '-          condition: instances.#(regime=="black_swan")',
        "+          condition: instances.#(p_black_swan>0.2)",
        "+        - name: classifier-again",
        "+          serviceName: market-regime-classifier",
    ]


def test_a_file_that_is_not_one_graph_is_refused() -> None:
    with pytest.raises(ManifestInvalid, match="not an InferenceGraph manifest"):
        load_graph("kind: InferenceService\n", source="x.yaml")
    with pytest.raises(ManifestInvalid, match="keep the InferenceGraph in a file of its own"):
        load_graph(EXAMPLE.read_text() + "---\nkind: ConfigMap\n", source="x.yaml")
