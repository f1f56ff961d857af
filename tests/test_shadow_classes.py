"""The multiclass shadow judge: a challenger classifier judged on class-name labels, per class."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from sklearn.metrics import f1_score
from support.prediction_answers import answer
from support.readme_blocks import README
from support.rollout_values import in_shadow

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.predictions import LoggedPrediction, PredictionPair
from controller.rollout.actions import AnalyzeShadow, EndShadow, StartRollback
from controller.rollout.decide import conclude_shadow, decide
from controller.rollout.messages import RolloutCommit, gates_in_message, render_rollout_message
from controller.rollout.policy import RolloutPolicy, ShadowPhase
from controller.shadow.analysis import judge_mirrored
from controller.shadow.class_judge import judge_classes
from controller.shadow.class_samples import ClassObservation, ClassSamples, decision_of
from controller.shadow.judge import ShadowJudgement, ShadowPolicy, shadow_report_markdown
from controller.shadow.statistics import macro_f1, paired_bootstrap_macro_f1
from controller.testing import MemoryPredictionStore

CLASSES = ("calm", "volatile", "black_swan")
#: The market-regime classifier's policy, with few resamples to keep the tests fast.
POLICY = {"classes": list(CLASSES), "decisionField": "regime", "bootstrapResamples": 300}


def regimes(
    n: int = 3000,
    *,
    seed: int = 1,
    confuse_volatile: float = 0.0,
    labelled: int | None = None,
    black_swans: int | None = None,
) -> ClassSamples:
    """Days in calm (60 %), volatile (30 %) and black-swan (10 %) markets; the champion decides
    90 % of each regime right, the challenger decides as it does on 97 % of the days and anew
    on the rest, and calls ``confuse_volatile`` of the volatile days calm. ``labelled`` days
    have their label, of which at most ``black_swans`` black swans."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])

    def decided() -> np.ndarray:
        right = rng.random(n) < 0.9
        return np.where(right, truth, (truth + rng.integers(1, 3, n)) % 3)

    champion, redrawn = decided(), decided()
    challenger = np.where(rng.random(n) < 0.03, redrawn, champion)
    challenger[(truth == 1) & (rng.random(n) < confuse_volatile)] = 0
    known = np.arange(n) < (n if labelled is None else labelled)
    if black_swans is not None:
        known &= (truth != 2) | (np.cumsum(truth == 2) <= black_swans)
    observations = [
        ClassObservation(CLASSES[p], CLASSES[s], 5.0, 5.5, CLASSES[t] if k else None)
        for p, s, t, k in zip(champion, challenger, truth, known, strict=True)
    ]
    return ClassSamples.from_observations(CLASSES, observations)


def verdicts(judgement: ShadowJudgement) -> dict[str, Verdict]:
    return {r.gate: r.verdict for r in judgement.results}


def summary(judgement: ShadowJudgement, gate: str) -> str:
    return next(r.summary for r in judgement.results if r.gate == gate)


# -- the judge -----------------------------------------------------------------------------------


def test_a_challenger_that_takes_volatile_days_for_calm_fails_and_names_the_class() -> None:
    """Calling 40 % of the volatile days calm fails macro-F1, McNemar and volatile's recall;
    the other regimes' recall passes, and the reason names the class."""
    judgement = judge_classes(regimes(confuse_volatile=0.4), ShadowPolicy.model_validate(POLICY))
    assert judgement.verdict is Verdict.FAIL
    assert verdicts(judgement) == {
        "shadow/errors": Verdict.PASS,
        "shadow/agreement": Verdict.FAIL,
        "shadow/latency": Verdict.PASS,
        "shadow/macro-f1": Verdict.FAIL,
        "shadow/recall/calm": Verdict.PASS,
        "shadow/recall/volatile": Verdict.FAIL,
        "shadow/recall/black_swan": Verdict.PASS,
        "shadow/mcnemar": Verdict.FAIL,
    }
    assert "shadow/recall/volatile" in judgement.reason
    volatile = summary(judgement, "shadow/recall/volatile")
    assert volatile.startswith(
        "shadow/recall/volatile: recall 0.510 vs 0.887 (-0.377, max drop 0.02) on 865 labelled "
        "volatile; only the champion right on 326, only the challenger on 0"
    )
    # The confusion matrices, compactly in the macro-F1 line: the challenger's volatile row
    # has its missing days in the calm column.
    line = summary(judgement, "shadow/macro-f1")
    assert "confusion (rows true, columns decided: calm/volatile/black_swan)" in line
    assert "challenger [1643 90 100; 394 441 30; 11 16 275]" in line
    assert "champion [1646 88 99; 51 767 47; 11 16 275]" in line


def test_a_challenger_as_good_as_the_champion_passes() -> None:
    judgement = judge_classes(regimes(), ShadowPolicy.model_validate(POLICY))
    assert judgement.verdict is Verdict.PASS, judgement.reason
    assert set(verdicts(judgement).values()) == {Verdict.PASS}
    assert judgement.labelled == 3000


def test_too_few_labels_of_one_class_is_inconclusive_never_a_pass() -> None:
    """Four labelled black swans (minPositives 10 per class): every labelled check waits, the
    others pass, and the judgement says which class is short."""
    judgement = judge_classes(regimes(black_swans=4), ShadowPolicy.model_validate(POLICY))
    assert judgement.verdict is Verdict.INCONCLUSIVE
    labelled_checks = [
        g for g in verdicts(judgement) if g.startswith(("shadow/macro", "shadow/re"))
    ]
    assert {verdicts(judgement)[g] for g in [*labelled_checks, "shadow/mcnemar"]} == {
        Verdict.INCONCLUSIVE
    }
    assert "black_swan 4 labelled, below minPositives 10 per class" in summary(
        judgement, "shadow/macro-f1"
    )
    # A worse challenger with too few labels is not passed either.
    worse = judge_classes(
        regimes(confuse_volatile=0.4, labelled=40), ShadowPolicy.model_validate(POLICY)
    )
    assert worse.verdict is not Verdict.PASS
    assert "40 labelled, below minLabelled 200" in summary(worse, "shadow/mcnemar")


def test_the_report_and_the_commit_body_carry_both_confusion_matrices() -> None:
    """The judgement's details are two small Markdown tables; the PR report and the commit
    body add them after the checks, and the gates are still read back from the body."""
    judgement = judge_classes(regimes(confuse_volatile=0.4), ShadowPolicy.model_validate(POLICY))
    table = (
        "| challenger | calm | volatile | black_swan |\n"
        "|---|---|---|---|\n"
        "| **calm** | 1643 | 90 | 100 |\n"
        "| **volatile** | 394 | 441 | 30 |\n"
        "| **black_swan** | 11 | 16 | 275 |\n"
    )
    assert table in judgement.details
    assert "| champion | calm | volatile | black_swan |" in judgement.details
    report = shadow_report_markdown(judgement, model="clf", champion="v1", challenger="v2")
    assert report.rstrip().endswith(judgement.details.rstrip())
    commit = RolloutCommit(
        model="market-regime-classifier", version=2, environment="staging",
        action="rollback", headline="stopped in shadow, v1 serves", summary="Stopped.",
        results=judgement.results, details=judgement.details,
    )  # fmt: skip
    message = render_rollout_message(commit)
    assert table in message
    assert message.index("Gates:") < message.index(table) < message.index("Sluice-Model:")
    assert [r.gate for r in gates_in_message(message)] == [r.gate for r in judgement.results]


def test_a_commit_without_details_is_as_before() -> None:
    """The binary judge has no details: the trailers follow the gates, as they always did."""
    ok = GateResult("shadow/errors", Verdict.PASS, "shadow/errors: ok")
    commit = RolloutCommit("m", 1, "e", "step", "h", "s", results=(ok,))
    assert render_rollout_message(commit).split("\n")[4:8] == [
        "Gates:",
        "- [pass] shadow/errors: ok",
        "",
        "Sluice-Model: m",
    ]


# -- statistics ----------------------------------------------------------------------------------


def test_macro_f1_equals_sklearn_with_absent_classes() -> None:
    rng = np.random.default_rng(2)
    labels = rng.choice(4, size=400, p=[0.5, 0.3, 0.2, 0.0])
    decided = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 3, 400))
    expected = f1_score(labels, decided, average="macro", labels=range(4), zero_division=0)
    assert macro_f1(decided, labels, 4) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(InputError, match="class indices 0 to 2"):
        macro_f1([0, 3], [0, 1], 3)


def test_the_macro_f1_bootstrap_is_seeded_and_paired() -> None:
    """Same seed, same bounds; a model against itself differs by exactly 0."""
    samples = regimes(confuse_volatile=0.2)
    args = (samples.primary, samples.shadow, samples.labels)
    first = paired_bootstrap_macro_f1(
        *args, classes=3, margin=0.02, alpha=0.05, resamples=200, seed=3
    )
    again = paired_bootstrap_macro_f1(
        *args, classes=3, margin=0.02, alpha=0.05, resamples=200, seed=3
    )
    assert first == again
    assert first.lower < first.difference < first.upper < 0
    same = paired_bootstrap_macro_f1(
        samples.primary, samples.primary, samples.labels, classes=3, margin=0.02, alpha=0.05,
        resamples=200, seed=3,
    )  # fmt: skip
    assert (same.lower, same.difference, same.upper) == (0.0, 0.0, 0.0)


# -- reading decisions and labels from the log ---------------------------------------------------


def test_decisions_are_read_from_the_decision_field_else_the_largest_probability() -> None:
    row = {"regime": "volatile", "p_calm": 0.5, "p_volatile": 0.3, "p_black_swan": 0.2}
    assert decision_of({"predictions": [row]}, CLASSES, "regime") == 1
    assert decision_of({"predictions": [row]}, CLASSES) == 0  # no decisionField: argmax
    without = {k: v for k, v in row.items() if k != "regime"}
    assert decision_of({"predictions": [without]}, CLASSES, "regime") == 0
    assert decision_of({"predictions": ["black_swan"]}, CLASSES) == 2
    assert decision_of({"predictions": [[0.1, 0.2, 0.7]]}, CLASSES) == 2
    tensor = {"name": "p", "shape": [1, 3], "data": [0.1, 0.8, 0.1]}
    assert decision_of({"outputs": [tensor]}, CLASSES) == 1
    for unreadable in (
        {"predictions": [{"regime": "crash"}]},
        {"predictions": [{"p_calm": 0.5, "p_volatile": 0.5}]},
        {"predictions": [row, row]},
        {"predictions": [[0.5, 0.5]]},
        {"predictions": [True]},
        None,
    ):
        assert decision_of(unreadable, CLASSES, "regime") is None, unreadable


def logged(request_id: str, role: str, output: object, status: int = 200) -> LoggedPrediction:
    return LoggedPrediction(
        request_id,
        1.0,
        "clf",
        "1",
        "r1",
        role,
        "d",
        output,
        4.0,
        status,  # type: ignore[arg-type]
    )


def regime_answer(regime: str) -> dict[str, object]:
    return {"predictions": [{"regime": regime, "p_calm": 0.4, "p_volatile": 0.3}]}


def test_samples_from_pairs_skip_failed_primaries_count_failures_and_read_labels() -> None:
    """A champion without a decision leaves the day out, a challenger without one is a
    failure; labels are class names, or numbers written as a class's name."""
    pairs = [
        PredictionPair("a", logged("a", "primary", regime_answer("calm")),
                       logged("a", "shadow", regime_answer("volatile")), "volatile"),
        PredictionPair("b", logged("b", "primary", regime_answer("calm"), 500),
                       logged("b", "shadow", regime_answer("calm")), "calm"),
        PredictionPair("c", logged("c", "primary", regime_answer("calm")),
                       logged("c", "shadow", {"error": "boom"}), None),
        PredictionPair("d", logged("d", "primary", regime_answer("calm")),
                       logged("d", "shadow", regime_answer("calm")), None),
    ]  # fmt: skip
    samples = ClassSamples.from_pairs(pairs, CLASSES, decision_field="regime")
    assert (samples.size, samples.shadow_failures) == (2, 1)
    assert samples.primary.tolist() == [0, 0]
    assert samples.shadow.tolist() == [1, 0]
    assert samples.labels.tolist() == [1, -1]
    digits = {"predictions": [{"regime": 2}]}  # a classifier whose classes are numbers
    numbered = PredictionPair(
        "e", logged("e", "primary", digits), logged("e", "shadow", digits), 2.0
    )
    samples = ClassSamples.from_pairs([numbered], ("1", "2"), decision_field="regime")
    assert (samples.primary.tolist(), samples.labels.tolist()) == ([1], [1])


def test_a_label_that_is_not_a_class_names_the_request_and_the_fix() -> None:
    pair = PredictionPair(
        "day-41",
        logged("day-41", "primary", regime_answer("calm")),
        logged("day-41", "shadow", regime_answer("calm")),
        "crash",
    )
    with pytest.raises(InputError) as raised:
        ClassSamples.from_pairs([pair], CLASSES, decision_field="regime")
    assert raised.value.message == (
        "request day-41 has the label 'crash', not one of the classes ['calm', 'volatile', "
        "'black_swan']: send its label again as one of them (the latest label wins), or add "
        "the class to rollout.shadow.judge.classes"
    )


def test_the_rollout_judges_the_log_by_class_and_a_class_label_stops_a_binary_judge() -> None:
    """judge_mirrored reads class-name labels from the prediction store: the multiclass judge
    uses them; a binary judge meeting one is an error naming the request (nothing judged)."""
    store = MemoryPredictionStore()
    for i, regime in enumerate(["calm", "volatile", "black_swan"] * 4):
        output = json.dumps(regime_answer(regime)).encode()
        store.record(answer(f"day-{i}", output=output, revision="r1"))
        store.record(answer(f"day-{i}", "shadow", output=output, revision="r2"))
        store.record_feedback(f"day-{i}", regime)
    obs = SimpleNamespace(canary_revision="r2", pin_changed_at=0.0)  # what judge_mirrored reads
    multiclass = ShadowPhase.model_validate(
        {"judge": {**POLICY, "minSamples": 12, "minLabelled": 12, "minPositives": 4}}
    )
    judged = judge_mirrored(store, obs, multiclass)  # type: ignore[arg-type]
    assert judged.verdict is Verdict.PASS, judged.reason
    assert (judged.samples, judged.labelled) == (12, 12)
    scored = MemoryPredictionStore()
    scored.record(answer("tx-1", score=0.2, revision="r1"))
    scored.record(answer("tx-1", "shadow", score=0.3, revision="r2"))
    scored.record_feedback("tx-1", "calm")
    binary = judge_mirrored(scored, obs, ShadowPhase())  # type: ignore[arg-type]
    assert binary.verdict is Verdict.ERROR
    assert binary.reason == (
        "request tx-1 has the label 'calm', a class name, but the shadow judge is binary "
        "(labels 0 or 1): set rollout.shadow.judge.classes to judge a classifier, or send its "
        "label again as 0 or 1 (the latest label wins)"
    )


# -- the policy ----------------------------------------------------------------------------------


def test_the_policy_takes_classes_and_a_decision_field_and_documents_them() -> None:
    policy = ShadowPolicy.model_validate(POLICY)
    assert policy.classes == CLASSES
    assert policy.decision_field == "regime"
    assert ShadowPolicy().classes is None  # unset: the binary judge
    schema = ShadowPolicy.model_json_schema(by_alias=True)["properties"]
    assert "Judge a classifier" in schema["classes"]["description"]
    assert "largest p_<class>" in schema["decisionField"]["description"]
    for bad, message in (
        ({"classes": ["calm"]}, "at least 2"),
        ({"classes": ["calm", "calm"]}, "distinct, non-empty names"),
        ({"decisionField": "regime"}, "set classes too"),
    ):
        with pytest.raises(ValidationError, match=message):
            ShadowPolicy.model_validate(bad)


# -- the README ----------------------------------------------------------------------------------


def test_the_readme_policy_judges_as_the_readme_shows() -> None:
    """The README's market-regime policy is a valid rollout policy, and the commit body it
    shows for a challenger that calls 40 % of the volatile days calm is what the judge writes."""
    section = README.read_text(encoding="utf-8").split("#### A classifier in shadow", 1)[1]
    section = section.split("\n### ", 1)[0].split("\n#### ", 1)[0]
    (policy_block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    (shown,) = re.findall(r"```text\n(.*?)```", section, flags=re.DOTALL)
    policy = RolloutPolicy.model_validate(yaml.safe_load(policy_block)["rollout"])
    assert policy.shadow is not None
    judgement = judge_classes(regimes(confuse_volatile=0.4), policy.shadow.judge)
    commit = RolloutCommit(
        model="market-regime-classifier", version=2, environment="staging",
        action="rollback", headline="stopped in shadow, v1 serves", summary="Stopped.",
        results=judgement.results, details=judgement.details,
    )  # fmt: skip
    message = render_rollout_message(commit)
    whole = [line for line in shown.splitlines() if line and "…" not in line]
    assert len(whole) == 8  # macro-F1, volatile, the heading and the challenger's table
    for line in whole:
        assert line in message.splitlines(), line


# -- the rollout ---------------------------------------------------------------------------------


def test_the_rollout_carries_the_matrices_into_its_rollback_and_its_first_step() -> None:
    """A failing multiclass judgement rolls back with the matrices for the commit body; a
    passing one steps with them in the body and in the pull request's report."""
    policy = RolloutPolicy.model_validate(
        {"steps": [10, 100], "shadow": {"maxDuration": 600, "judge": POLICY}}
    )
    assert policy.shadow is not None
    obs = in_shadow()
    analysis = decide(obs, policy, 1031.0)
    assert isinstance(analysis, AnalyzeShadow), analysis
    failed = judge_classes(regimes(confuse_volatile=0.4), policy.shadow.judge)
    rollback = conclude_shadow(obs, policy, analysis, failed, 1032.0)
    assert isinstance(rollback, StartRollback)
    assert rollback.details == failed.details
    assert rollback.reason.startswith("shadow/agreement: ")
    passed = judge_classes(regimes(), policy.shadow.judge)
    step = conclude_shadow(obs, policy, analysis, passed, 1032.0)
    assert isinstance(step, EndShadow)
    assert step.details == passed.details
    assert passed.details.rstrip() in step.report
