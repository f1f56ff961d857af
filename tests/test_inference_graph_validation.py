"""InferenceGraph manifests are validated as the API server (strictly) and KServe's webhook
would, before anything is committed: one line naming the file, the field and the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from support.graph_samples import (
    ENSEMBLE_SAMPLE,
    MARKET_REGIME,
    SEQUENCE_SAMPLE,
    SPLITTER_SAMPLE,
    SWITCH_SAMPLE,
    graph,
)
from upstream.sources import UPSTREAM

from controller.errors import ManifestInvalid
from controller.manifests.inference_graph import validate_inferencegraph
from controller.manifests.render import validate_rendered
from controller.schemas import INFERENCEGRAPH_SCHEMA, extract_openapi_schema

UPSTREAM_CRD = UPSTREAM / "kserve/config/crd/full/serving.kserve.io_inferencegraphs.yaml"
SAMPLES = [SEQUENCE_SAMPLE, SWITCH_SAMPLE, ENSEMBLE_SAMPLE, SPLITTER_SAMPLE, MARKET_REGIME]


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(ManifestInvalid) as raised:
        validate_inferencegraph(document, source="graph.yaml")
    message = str(raised.value)
    assert "\n" not in message
    return message


def with_root(**root: Any) -> dict[str, Any]:
    """The ensemble sample with its root node's fields replaced."""
    document = copy.deepcopy(ENSEMBLE_SAMPLE)
    document["spec"]["nodes"]["root"].update(root)
    return document


def test_packaged_schema_matches_the_upstream_crd() -> None:
    """The packaged schema is exactly what the extraction gives from KServe's CRD (vendored)."""
    assert json.loads(INFERENCEGRAPH_SCHEMA.read_text()) == extract_openapi_schema(
        UPSTREAM_CRD, "v1alpha1"
    )


@pytest.mark.parametrize("document", SAMPLES, ids=lambda d: d["metadata"]["name"])
def test_kserves_samples_and_the_issue_graph_are_accepted(document: dict[str, Any]) -> None:
    """KServe's four sample graphs and Sluice's market-regime graph pass."""
    validate_inferencegraph(document, source="graph.yaml")


def test_unknown_field_is_refused_with_the_known_ones() -> None:
    """A misspelt step field (``stepName`` for ``name``) is refused, as strict validation does."""
    document = copy.deepcopy(ENSEMBLE_SAMPLE)
    document["spec"]["nodes"]["root"]["steps"][0]["stepName"] = "x"
    assert refusal(document) == (
        "graph.yaml: InferenceGraph spec.nodes.root.steps.0: Additional properties are not "
        "allowed ('stepName' was unexpected); remove it or use one of: condition, data, "
        "dependency, mapPredictionsToInstances, name, nodeName, serviceName, serviceUrl, weight"
    )


def test_unknown_top_level_spec_field_is_refused() -> None:
    """Strictness covers ``spec`` too (``routes``, the field of older KServe docs)."""
    document = copy.deepcopy(ENSEMBLE_SAMPLE)
    document["spec"]["routes"] = []
    assert "InferenceGraph spec: Additional properties are not allowed ('routes'" in refusal(
        document
    )


def test_router_type_outside_the_enum_is_refused() -> None:
    """``routerType`` is one of Sequence, Splitter, Ensemble, Switch."""
    message = refusal(with_root(routerType="Broadcast"))
    assert message.startswith("graph.yaml: InferenceGraph spec.nodes.root.routerType: 'Broadcast'")
    assert message.endswith("; fix the manifest")


def test_missing_root_node_is_refused() -> None:
    """KServe's webhook needs a node named root."""
    document = graph(
        "no-root", {"main": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}
    )
    assert refusal(document) == (
        "graph.yaml: InferenceGraph spec.nodes: root node not found, InferenceGraph needs a node "
        "named 'root' (KServe's webhook refuses it); name the entry node root"
    )


def test_invalid_name_is_refused() -> None:
    """The name follows KServe's DNS-1035 rule."""
    document = copy.deepcopy(ENSEMBLE_SAMPLE)
    document["metadata"]["name"] = "1-Graph"
    assert refusal(document).startswith('graph.yaml: InferenceGraph metadata.name: "1-Graph" must')


def test_duplicate_step_names_are_refused() -> None:
    """Two steps of a node may not share a name (it keys the Ensemble's answer)."""
    steps = [{"serviceName": "a", "name": "m"}, {"serviceName": "b", "name": "m"}]
    assert 'steps.1.name: node "root" of InferenceGraph "ensemble-model" contains more ' in (
        refusal(with_root(steps=steps))
    )


@pytest.mark.parametrize(
    ("step", "what"),
    [
        ({"name": "x"}, "no"),
        ({"serviceName": "a", "serviceUrl": "http://a"}, "more than one (serviceName"),
    ],
)
def test_step_needs_exactly_one_target(step: dict[str, Any], what: str) -> None:
    """A step names one of nodeName, serviceName, serviceUrl."""
    message = refusal(with_root(steps=[step]))
    assert f"spec.nodes.root.steps.0: step 0 specifies {what}" in message
    assert message.endswith("give it exactly one of nodeName, serviceName, serviceUrl")


def test_splitter_weights_must_sum_to_100() -> None:
    """A Splitter's weights sum to 100, as KServe's webhook checks."""
    document = copy.deepcopy(SPLITTER_SAMPLE)
    document["spec"]["nodes"]["root"]["steps"][1]["weight"] = 70
    assert refusal(document) == (
        "graph.yaml: InferenceGraph spec.nodes.root.steps: the Splitter's weights sum to 90, "
        "not 100 (KServe's webhook refuses it); make them sum to 100"
    )


def test_splitter_step_without_weight_is_refused() -> None:
    """Every Splitter step has a weight."""
    document = copy.deepcopy(SPLITTER_SAMPLE)
    del document["spec"]["nodes"]["root"]["steps"][0]["weight"]
    assert "spec.nodes.root.steps.0.weight: a Splitter step is missing its 'weight'" in refusal(
        document
    )


def test_node_name_naming_no_node_is_refused() -> None:
    """Sluice's rule: a ``nodeName`` that names no node would fail every request reaching it."""
    document = copy.deepcopy(MARKET_REGIME)
    document["spec"]["nodes"]["root"]["steps"][1]["nodeName"] = "by-regim"
    assert refusal(document) == (
        'graph.yaml: InferenceGraph spec.nodes.root.steps.1.nodeName: no node is named "by-regim" '
        "(KServe accepts it, but its router answers 500 to every request reaching this step); "
        "name one of: black-swan, by-regime, root, tail-models"
    )


def test_nodes_in_a_loop_are_refused() -> None:
    """Sluice's rule: nodes that reach themselves would recurse forever."""
    document = graph("loop", {
        "root": {"routerType": "Sequence", "steps": [{"nodeName": "a"}]},
        "a": {"routerType": "Sequence", "steps": [{"nodeName": "root"}]},
    })  # fmt: skip
    assert "spec.nodes: the nodes form a loop (a -> root -> a;" in refusal(document)


def test_rendered_overlay_validates_its_graphs(tmp_path: Path) -> None:
    """``validate_rendered`` checks an InferenceGraph beside the InferenceServices."""
    bad = copy.deepcopy(SPLITTER_SAMPLE)
    bad["spec"]["nodes"]["root"]["steps"][0]["weight"] = 10
    (tmp_path / "graph.json").write_text(json.dumps(bad))
    (tmp_path / "kustomization.yaml").write_text("resources:\n- graph.json\n")
    with pytest.raises(ManifestInvalid, match=r"\(splitter-model\): InferenceGraph spec\.nodes"):
        validate_rendered(tmp_path)
    (tmp_path / "graph.json").write_text(json.dumps(SPLITTER_SAMPLE))
    assert [d["kind"] for d in validate_rendered(tmp_path)] == ["InferenceGraph"]
