"""The market-regime example graph: valid as committed, and routed as KServe's router would.

The services are an in-memory fake step caller answering as the served models do (V1
``predictions``, one object per row), so the test shows why the graph maps the classifier's
``predictions`` to ``instances``: what each specialist receives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from controller.local.graph import StepAnswer, StepRef, answer_graph_request
from controller.local.graph.spec import StepTarget
from controller.manifests.inference_graph import validate_inferencegraph

GRAPH_FILE = (
    Path(__file__).resolve().parents[1]
    / "models"
    / "market_regime"
    / "overlay"
    / "inference-graph.yaml"
)
FEATURES = {"ret_1": 0.01, "vol_20": 0.02}


def example() -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe").load(GRAPH_FILE.read_text())
    return document


class Models:
    """The four models' V1 answers; records what each was sent."""

    def __init__(self, regime: str) -> None:
        self.regime = regime
        self.sent: dict[str, list[Any]] = {}

    async def __call__(
        self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
    ) -> StepAnswer:
        self.sent.setdefault(target.service_name, []).append(json.loads(body))
        if target.service_name == "market-regime-classifier":
            row = {"regime": self.regime, "p_calm": 0.1, **FEATURES}
            return StepAnswer(200, json.dumps({"predictions": [row]}).encode())
        return StepAnswer(200, json.dumps({"predictions": [{"p_up": 0.6}]}).encode())


def test_the_example_graph_passes_sluices_validation() -> None:
    """The committed graph is what KServe's CRD, its webhook and Sluice's rules accept."""
    validate_inferencegraph(example(), source=str(GRAPH_FILE))


@pytest.mark.parametrize("regime", ["calm", "volatile"])
def test_calm_and_volatile_rows_reach_their_specialist_with_the_features_as_instances(
    regime: str,
) -> None:
    """A calm or volatile row reaches its own specialist alone, which gets the classifier's
    row under ``instances``, features included; the answer is the specialist's."""
    models = Models(regime)
    answer = asyncio.run(
        answer_graph_request(example(), b'{"instances": [{"ret_1": 0.01}]}', {}, models)
    )
    assert answer.status == 200
    assert set(models.sent) == {"market-regime-classifier", f"market-regime-{regime}"}
    assert models.sent[f"market-regime-{regime}"] == [
        {"instances": [{"regime": regime, "p_calm": 0.1, **FEATURES}]}
    ]
    assert json.loads(answer.body) == {"predictions": [{"p_up": 0.6}]}


def test_a_black_swan_reaches_the_blend_with_the_ensembles_answer() -> None:
    """A black swan goes to the Ensemble of the classifier and both specialists, whose answer,
    keyed by step name, is the blend's request; the graph answers with the blend's answer."""
    models = Models("black_swan")
    answer = asyncio.run(
        answer_graph_request(example(), b'{"instances": [{"ret_1": 0.01}]}', {}, models)
    )
    assert answer.status == 200
    row = {"regime": "black_swan", "p_calm": 0.1, **FEATURES}
    for specialist in ("market-regime-calm", "market-regime-volatile"):
        assert models.sent[specialist] == [{"instances": [row]}]
    # The classifier twice: at the root, then in the Ensemble for its probabilities.
    assert models.sent["market-regime-classifier"][1] == {"instances": [row]}
    (sent,) = models.sent["market-regime-blend"]
    assert sent == {
        "classifier": {"predictions": [row]},
        "calm": {"predictions": [{"p_up": 0.6}]},
        "volatile": {"predictions": [{"p_up": 0.6}]},
    }
    assert json.loads(answer.body) == {"predictions": [{"p_up": 0.6}]}
