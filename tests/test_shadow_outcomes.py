"""Named outcomes in the shadow judge: models that answer the same requests (an InferenceGraph's
regime classifier and its direction specialist share the request id) each judged on their own
ground truth, the outcome their policy names."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from support.prediction_answers import answer

from controller.analysis_types import Verdict
from controller.rollout.policy import ShadowPhase
from controller.shadow.analysis import judge_mirrored
from controller.shadow.judge import ShadowPolicy
from controller.testing import MemoryPredictionStore

CLASSES = ["calm", "volatile", "black_swan"]
#: What judge_mirrored reads of an observation.
OBS = SimpleNamespace(canary_revision="r2", pin_changed_at=0.0)
SMALL = {"minSamples": 12, "minLabelled": 12, "minPositives": 4, "bootstrapResamples": 200}


def graph_log() -> MemoryPredictionStore:
    """Twelve days the classifier (model regime) and the specialist (model up) answered under
    the same request ids; each day's regime and direction arrived as two named outcomes."""
    store = MemoryPredictionStore()
    for i, regime in enumerate(CLASSES * 4):
        day, up = f"day-{i}", i % 2
        decided = json.dumps({"predictions": [{"regime": regime}]}).encode()
        for role, revision in (("primary", "r1"), ("shadow", "r2")):
            store.record(answer(day, role, output=decided, revision=revision, model="regime"))
        store.record_outcomes([(day, "regime", regime), (day, "up", up)])
    return store


def test_each_judge_reads_the_outcome_its_policy_names() -> None:
    """The classifier's judge reads regime (class names) and passes; the same pairs judged on
    the default outcome have no labels; a binary judge pointed at regime meets class names."""
    store = graph_log()
    classifier = ShadowPhase.model_validate(
        {"judge": {"classes": CLASSES, "decisionField": "regime", "outcome": "regime", **SMALL}}
    )
    judged = judge_mirrored(store, OBS, classifier)  # type: ignore[arg-type]
    assert judged.verdict is Verdict.PASS, judged.reason
    assert (judged.samples, judged.labelled) == (12, 12)
    unnamed = ShadowPhase.model_validate(
        {"judge": {"classes": CLASSES, "decisionField": "regime", **SMALL}}
    )
    assert judge_mirrored(store, OBS, unnamed).labelled == 0  # type: ignore[arg-type]


def test_a_binary_judge_reads_the_direction_beside_the_regime() -> None:
    """The specialist's judge (binary, outcome up) reads 0 and 1 where a regime judge reads
    class names, on the same request ids."""
    store = MemoryPredictionStore()
    for i in range(12):
        day = f"day-{i}"
        store.record(answer(day, score=0.2 + 0.05 * (i % 2), revision="r1"))
        store.record(answer(day, "shadow", score=0.25 + 0.05 * (i % 2), revision="r2"))
        store.record_outcomes([(day, "regime", CLASSES[i % 3]), (day, "up", i % 2)])
    specialist = ShadowPhase.model_validate({"judge": {"outcome": "up", **SMALL}})
    judged = judge_mirrored(store, OBS, specialist)  # type: ignore[arg-type]
    assert judged.verdict is not Verdict.ERROR, judged.reason
    assert (judged.samples, judged.labelled) == (12, 12)
    wrong = ShadowPhase.model_validate({"judge": {"outcome": "regime", **SMALL}})
    refused = judge_mirrored(store, OBS, wrong)  # type: ignore[arg-type]
    assert refused.verdict is Verdict.ERROR
    assert "a class name, but the shadow judge is binary" in refused.reason


@pytest.mark.parametrize("bad", ["", "Regime", "up-day", "1st", "x" * 64])
def test_the_policys_outcome_is_an_outcome_name(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not an outcome name"):
        ShadowPolicy.model_validate({"outcome": bad})


def test_the_policy_documents_its_outcome_and_defaults_to_label() -> None:
    assert ShadowPolicy().outcome == "label"
    assert ShadowPolicy.model_validate({"outcome": "up"}).outcome == "up"
    schema = ShadowPolicy.model_json_schema(by_alias=True)["properties"]["outcome"]
    assert schema["default"] == "label"
    description = schema["description"]
    assert "regime for a regime classifier and up for a direction specialist" in description
