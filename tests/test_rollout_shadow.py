"""The shadow phase of a rollout: decisions over plain values, and the pin edits they commit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.rollout_values import HEAD, SMOKED, in_shadow, shadow_target

from controller.analysis_types import GateResult, Verdict
from controller.errors import ConfigError
from controller.manifests.environment import parse_environment
from controller.manifests.manifest import dump_pin, load_pin, set_shadow_annotations
from controller.rollout.actions import (
    AnalyzeShadow,
    EndShadow,
    Hold,
    Quarantine,
    Smoke,
    StartRollback,
    Wait,
)
from controller.rollout.decide import conclude_shadow, decide
from controller.rollout.evidence_trailer import shadow_evidence
from controller.rollout.messages import (
    RolloutCommit,
    render_rollout_comment,
    render_rollout_message,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.pass_report import phase_of
from controller.rollout.pin_edits import weight_edit
from controller.rollout.policy import RolloutPolicy
from controller.rollout.record import AnalysisRecord
from controller.shadow.judge import ShadowJudgement, judge_shadow
from controller.shadow.phase import MIRROR_PERCENT_ANNOTATION, PHASE_ANNOTATION
from controller.shadow.samples import ShadowObservation, ShadowSamples

POLICY = RolloutPolicy.model_validate(
    {
        "steps": [10, 50, 100],
        "interval": 30,
        "failureLimit": 1,
        "shadow": {"maxDuration": 600, "judge": {"minSamples": 200, "minLabelled": 100}},
    }
)

assert POLICY.shadow is not None
JUDGE = POLICY.shadow.judge


def samples(n: int, *, shift: float = 0.0, labelled: int = 0, seed: int = 1) -> ShadowSamples:
    """``n`` requests; the challenger's scores ``shift`` above the champion's."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    primary = np.clip(np.where(labels, 0.7, 0.2) + rng.normal(0, 0.1, n), 0, 1)
    shadow = np.clip(primary + shift + rng.normal(0, 0.01, n), 0, 1)
    return ShadowSamples.from_observations(
        ShadowObservation(float(p), float(s), 20.0, 21.0, (float(y) if i < labelled else None))
        for i, (p, s, y) in enumerate(zip(primary, shadow, labels, strict=True))
    )


def analyse(obs: ReleaseObservation, now: float) -> AnalyzeShadow:
    action = decide(obs, POLICY, now)
    assert isinstance(action, AnalyzeShadow), action
    return action


def test_shadow_waits_for_the_challenger_revision() -> None:
    action = decide(in_shadow(shadow_target(ready=False)), POLICY, 1010.0)
    assert isinstance(action, Wait)
    assert action.phase == "shadowing"


def test_shadow_challenger_that_fails_to_load_rolls_back() -> None:
    action = decide(in_shadow(shadow_target(ready=False, failure="OOMKilled")), POLICY, 1010.0)
    assert isinstance(action, StartRollback)
    assert "OOMKilled" in action.reason


def test_the_default_smoke_comes_first_then_the_shadow_judge() -> None:
    """A policy that does not mention the smoke smokes the challenger at the phase's start,
    once it is ready; the judge's first look comes after that, an interval after the pin."""
    assert POLICY.smoke.enabled
    fresh = in_shadow(analysis=None)
    assert decide(fresh, POLICY, 1005.0) == Smoke(
        10, AnalysisRecord(commit=HEAD, step=0), shadow=True
    )
    assert decide(in_shadow(), POLICY, 1005.0) == Wait(
        "shadow: next judgement in 25 s", "shadowing", 25.0
    )


def test_shadow_is_judged_every_interval() -> None:
    assert isinstance(decide(in_shadow(), POLICY, 1010.0), Wait)
    action = analyse(in_shadow(), 1031.0)
    assert action.look == 1
    assert action.record.step == 0
    assert action.record.smoke == SMOKED.smoke  # the smoke is not a look


def test_shadow_at_weight_zero_is_not_a_rollback() -> None:
    """Weight 0 without the shadow mark is a rollback; with it the challenger is judged."""
    rollback = decide(replace(in_shadow(), shadow_percent=None), POLICY, 1031.0)
    assert isinstance(rollback, Quarantine)
    assert isinstance(decide(in_shadow(), POLICY, 1031.0), AnalyzeShadow)


def test_quarantined_challenger_in_shadow_rolls_back() -> None:
    action = decide(in_shadow(quarantined="by hand"), POLICY, 1031.0)
    assert isinstance(action, StartRollback)


def test_a_passing_shadow_starts_the_first_canary_step_with_a_report() -> None:
    obs = in_shadow()
    judgement = judge_shadow(samples(400, labelled=300), JUDGE)
    assert judgement.verdict is Verdict.PASS, judgement.reason
    action = conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, 1032.0)
    assert isinstance(action, EndShadow)
    assert action.to_percent == 10
    assert "v2 vs v1" in action.report
    assert "400 mirrored requests" in action.report
    # The shadow evidence's numbers: the judgement's, as the commit's trailer carries them.
    assert (action.reason, action.samples, action.labelled) == (judgement.reason, 400, 300)
    body = shadow_evidence(action).body
    assert (body["verdict"], body["samples"], body["labelled"]) == ("pass", 400, 300)
    assert [c["name"] for c in body["checks"]] == [r.gate for r in judgement.results]


def test_shifted_scores_roll_back_with_numbers() -> None:
    obs = in_shadow()
    judgement = judge_shadow(samples(400, shift=0.3, labelled=300), JUDGE)
    action = conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, 1032.0)
    assert isinstance(action, StartRollback)
    assert action.reason.startswith("shadow/")
    assert any(ch.isdigit() for ch in action.reason)


def test_too_few_samples_hold_then_roll_back_after_max_duration() -> None:
    obs = in_shadow()
    judgement = judge_shadow(samples(50), JUDGE)
    assert judgement.verdict is Verdict.INCONCLUSIVE
    held = conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, 1032.0)
    assert isinstance(held, Hold)
    # `sluice rollout`'s timeline and sluice_rollout_phase say shadowing, not analysing.
    assert phase_of(held) == "shadowing"
    late = conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, 1000.0 + 600)
    assert isinstance(late, StartRollback)
    assert "no shadow verdict within 600 s" in late.reason


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=199),
    shift=st.floats(min_value=-0.05, max_value=0.05),
    labelled=st.integers(min_value=0, max_value=199),
    now=st.floats(min_value=1031.0, max_value=1599.0),
)
def test_shadow_never_passes_below_the_minimum_sample_size(
    n: int, shift: float, labelled: int, now: float
) -> None:
    obs = in_shadow()
    judgement = judge_shadow(
        samples(n, shift=shift, labelled=min(n, labelled)),
        JUDGE,
    )
    action = conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, now)
    assert not isinstance(action, EndShadow)


def test_a_store_result_never_decides_without_results() -> None:
    """An inconclusive judgement with one 'no log' result holds, never steps."""
    result = GateResult("shadow/prediction-log", Verdict.INCONCLUSIVE, "no log")
    judgement = ShadowJudgement(Verdict.INCONCLUSIVE, "no log", (result,), 0, 0)
    obs = in_shadow()
    assert isinstance(conclude_shadow(obs, POLICY, analyse(obs, 1031.0), judgement, 1040.0), Hold)


PIN = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fd
  annotations:
    sluice.dev/model-version: "2"  # the challenger
spec:
  predictor:
    canaryTrafficPercent: 0
    model:
      storageUri: s3://m/2
"""


def test_shadow_marks_round_trip_and_any_weight_edit_clears_them(tmp_path: Path) -> None:
    document = load_pin(PIN, source="pin")
    set_shadow_annotations(document, 25.0)
    marked = dump_pin(document)
    assert f'{MIRROR_PERCENT_ANNOTATION}: "25"' in marked
    assert f"{PHASE_ANNOTATION}: shadow" in marked
    assert "# the challenger" in marked
    (tmp_path / "pin.yaml").write_text(marked)
    weight_edit("pin.yaml", 2, 10, expect=0)(tmp_path)
    stepped = (tmp_path / "pin.yaml").read_text()
    assert PHASE_ANNOTATION not in stepped
    assert MIRROR_PERCENT_ANNOTATION not in stepped
    assert "canaryTrafficPercent: 10" in stepped
    assert stepped == PIN.replace("canaryTrafficPercent: 0", "canaryTrafficPercent: 10")


def test_the_pull_request_comment_carries_the_shadow_report() -> None:
    comment = render_rollout_comment(
        RolloutCommit(
            model="fd", version=2, environment="staging", action="step",
            headline="shadow passed, canary 10%", summary="ok",
            results=(GateResult("shadow/errors", Verdict.PASS, "0 of 400"),),
            report="### Shadow evaluation of fd: v2 vs v1 — **PASS**\n",
        ),
        "a" * 40,
    )  # fmt: skip
    assert "Shadow evaluation of fd: v2 vs v1" in comment


def test_a_shadow_phase_needs_serverless_revisions() -> None:
    text = (Path(__file__).parent.parent / "manifests/overlays/staging/sluice.yaml").read_text()
    text = text.replace("rollout:\n", "rollout:\n  shadow: {}\n", 1)
    assert parse_environment(text, source="s.yaml", environment="staging").rollout.shadow
    raw = text.replace("deploymentMode: Serverless", "deploymentMode: RawDeployment")
    with pytest.raises(ConfigError, match=r"rollout\.shadow needs deploymentMode Serverless"):
        parse_environment(raw, source="s.yaml", environment="staging")


def test_commit_bodies_name_each_gate_once() -> None:
    """Summaries that already start with the gate's name were printed after it again."""
    message = render_rollout_message(
        RolloutCommit(
            model="fd", version=2, environment="staging", action="rollback",
            headline="stopped in shadow, v1 serves", summary="Stopped in shadow.",
            results=(
                GateResult("shadow/latency", Verdict.FAIL, "shadow/latency: p95 +80% — fail"),
                GateResult("locust", Verdict.PASS, "88 requests"),
            ),
        )
    )  # fmt: skip
    assert "- [FAIL] shadow/latency: p95 +80% — fail" in message
    assert "- [pass] locust: 88 requests" in message
