"""A release's own rollout policy (``releases[].rollout``), deep-merged over the environment's.

The market-regime graph's members are different models in one environment: the classifier's
shadow judge is multiclass while the specialists' is binary, and a rare member needs other
steps. These tests read the example environment of that graph with overrides written in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from controller.errors import ConfigError
from controller.manifests.environment import EnvironmentConfig, parse_environment
from controller.rollout.observe import ReleaseRef
from controller.rollout.policy import RolloutPolicy, deep_merge, merge_policy

ROOT = Path(__file__).parent.parent
OVERLAY = (ROOT / "models/market_regime/overlay/sluice.yaml").read_text()


def _without_the_classifiers_policy(text: str) -> str:
    """The overlay's environment with its classifier release's own ``rollout:`` (the
    shadow judged downstream) taken out: the tests write their overrides in its place."""
    start = text.index("    # A challenger classifier answers in shadow")
    end = text.index("  - model: market-regime-calm")
    block = text[start:end]
    assert "    rollout:\n" in block, block
    assert "downstream:" in block, block
    return text[:start] + text[end:]


MARKET = _without_the_classifiers_policy(OVERLAY)
CLASSIFIER = "market-regime-classifier"
CLASSIFIER_PIN = "    pin: market-regime-classifier.yaml\n"


def with_override(override: str, text: str = MARKET) -> str:
    """The market-regime environment whose classifier release (releases[0]) has ``override``
    (YAML lines under ``rollout:``, indented by six)."""
    assert CLASSIFIER_PIN in text
    return text.replace(CLASSIFIER_PIN, f"{CLASSIFIER_PIN}    rollout:\n{override}", 1)


def environment(text: str) -> EnvironmentConfig:
    return parse_environment(text, source="sluice.yaml", environment="local")


def test_mappings_merge_key_by_key_and_lists_and_values_replace() -> None:
    base = {"steps": [10, 50, 100], "gates": {"judge": {"alpha": 0.05, "minSamples": 200}}}
    override = {"steps": [25, 100], "gates": {"judge": {"minSamples": 50}}}
    assert deep_merge(base, override) == {
        "steps": [25, 100],
        "gates": {"judge": {"alpha": 0.05, "minSamples": 50}},
    }
    assert base["gates"] == {"judge": {"alpha": 0.05, "minSamples": 200}}  # left as it was
    assert deep_merge({"shadow": {"mirrorPercent": 50}}, {"shadow": None}) == {"shadow": None}


def test_keys_merge_under_their_aliases_whichever_name_the_file_writes() -> None:
    """An environment writing interval_seconds and a release writing interval are one key."""
    policy = merge_policy(
        {"interval_seconds": 5, "gates": {"load_test": {"rps": 10, "users": 3}}},
        {"interval": 7, "gates": {"loadTest": {"rps": 20}}},
    )
    assert policy.interval_seconds == 7
    assert (policy.gates.load_test.rps, policy.gates.load_test.users) == (20, 3)


def test_a_classifier_release_overrides_its_shadow_judge_and_steps_only() -> None:
    """The override changes what it names; everything else is the environment's, and the
    other releases keep the environment's policy."""
    text = with_override(
        "      steps: [25, 100]\n"
        "      shadow:\n"
        "        judge: {classes: [calm, volatile, black_swan], minPositives: 5}\n",
        MARKET.replace("rollout:\n", "rollout:\n  shadow:\n    mirrorPercent: 50\n", 1),
    )
    config = environment(text)
    classifier = config.policy_for(CLASSIFIER)
    assert classifier.steps == (25, 100)
    assert classifier.shadow is not None
    assert classifier.shadow.judge.classes == ("calm", "volatile", "black_swan")
    assert classifier.shadow.judge.min_positives == 5
    assert classifier.shadow.mirror_percent == 50  # the environment's, merged key by key
    assert classifier.interval_seconds == config.rollout.interval_seconds == 6
    assert classifier.gates == config.rollout.gates
    for release in config.releases[1:]:
        assert config.policy_for(release.model) is config.rollout
    assert config.rollout.steps == (50, 100)
    assert config.rollout.shadow is not None
    assert config.rollout.shadow.judge.classes is None


def test_shadow_null_removes_the_environments_shadow_phase_for_that_release() -> None:
    shadowed = MARKET.replace("rollout:\n", "rollout:\n  shadow: {}\n", 1)
    config = environment(with_override("      shadow: null\n", shadowed))
    assert config.policy_for(CLASSIFIER).shadow is None
    assert config.policy_for("market-regime-calm").shadow is not None


def test_a_release_without_rollout_or_with_rollout_null_has_the_environments() -> None:
    config = environment(MARKET.replace(CLASSIFIER_PIN, f"{CLASSIFIER_PIN}    rollout: null\n"))
    assert config.releases[0].rollout is None
    assert config.policy_for(CLASSIFIER) is config.rollout


def test_an_unknown_model_has_no_policy() -> None:
    with pytest.raises(ConfigError, match="does not serve model 'nope'"):
        environment(MARKET).policy_for("nope")


@pytest.mark.parametrize(
    ("override", "said"),
    [
        (
            "      steps: [25, 50]\n",
            "sluice.yaml: releases[0].rollout.steps: Value error, steps must end at 100",
        ),
        (
            "      gates: {judge: {alpha: 0.7}}\n",
            "sluice.yaml: releases[0].rollout.gates.judge.alpha: Input should be less than 0.5",
        ),
        (
            "      interval: soon\n",
            "sluice.yaml: releases[0].rollout.interval: Input should be a valid number",
        ),
        (
            "      shadow: {judge: {decisionField: regime}}\n",
            "sluice.yaml: releases[0].rollout.shadow.judge: Value error, decisionField reads a "
            "classifier's decision: set classes too",
        ),
        (
            "      stepz: [25, 100]\n",
            "sluice.yaml: releases[0].rollout.stepz: Extra inputs are not permitted",
        ),
        (
            "      - 25\n",
            "sluice.yaml: releases[0].rollout: Input should be a mapping: the rollout fields "
            "this release changes",
        ),
        (
            "      gates: {metricsProfile: sluice-wrapper}\n",
            "sluice.yaml: releases[0].rollout.gates.metricsProfile: the metrics profile is the "
            "environment's",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_the_release_and_the_field(
    override: str, said: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        environment(with_override(override))
    assert raised.value.message.startswith(said)
    assert "\n" not in raised.value.message


def test_the_environments_own_mistake_is_named_where_it_is() -> None:
    """A bad environment policy is rollout.<field>, not the release that merges over it."""
    text = with_override("      interval: 3\n", MARKET.replace("steps: [50, 100]", "steps: [50]"))
    with pytest.raises(ConfigError, match=r"^sluice\.yaml: rollout\.steps: Value error"):
        environment(text)


def test_in_raw_deployment_a_release_inherits_the_wrapper_profile_and_may_not_shadow() -> None:
    raw = MARKET.replace("deploymentMode: Serverless", "deploymentMode: RawDeployment")
    config = environment(with_override("      gates: {judgeEnabled: false}\n", raw))
    policy = config.policy_for(CLASSIFIER)
    assert policy.gates.judge_enabled is False
    assert policy.gates.metrics_profile == config.rollout.gates.metrics_profile == "sluice-wrapper"
    with pytest.raises(ConfigError) as raised:
        environment(with_override("      shadow: {}\n", raw))
    assert raised.value.message == (
        "sluice.yaml: releases[0].rollout.shadow needs deploymentMode Serverless (a "
        "RawDeployment canary has no revision at weight 0 to mirror to); remove "
        "releases[0].rollout.shadow or use Serverless"
    )


def test_a_replay_is_checked_against_its_releases_own_load_test() -> None:
    """The blend replays 30 rps for 4 s: 120 requests a look. The environment asks for 40;
    the blend's own policy asking for 200 could never pass, and is refused."""
    blend_pin = "    pin: market-regime-blend.yaml\n"
    text = MARKET.replace(
        blend_pin, f"{blend_pin}    rollout:\n      gates: {{loadTest: {{minRequests: 200}}}}\n"
    )
    with pytest.raises(ConfigError, match=r"fewer than gates\.loadTest\.minRequests 200"):
        environment(text)


def test_the_readmes_example_reads_as_documented() -> None:
    """README's classifier release: its shadow judge is multiclass, the rest of its shadow
    phase is the environment's, and the specialist keeps the environment's binary judge."""
    readme = (ROOT / "README.md").read_text()
    (block,) = [
        b
        for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
        if "releases:" in b and "\n    rollout:\n" in b and "market-regime-calm" in b
    ]
    document = YAML(typ="safe").load(block) | {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "name": "local",
        "storage": {"allowedSchemes": ["s3"]},
    }
    config = environment(json.dumps(document))
    classifier = config.policy_for(CLASSIFIER).shadow
    assert classifier is not None
    assert classifier.judge.classes == ("calm", "volatile", "black_swan")
    assert classifier.max_duration_seconds == 604800
    calm = config.policy_for("market-regime-calm")
    assert calm is config.rollout
    assert calm.shadow is not None
    assert calm.shadow.judge.classes is None


def test_a_rollout_reads_the_releases_policy() -> None:
    """What the rollout, `sluice status` and the status page read: ReleaseRef.policy."""
    config = environment(with_override("      steps: [25, 100]\n"))
    assert ReleaseRef(config, config.release(CLASSIFIER)).policy.steps == (25, 100)
    calm = ReleaseRef(config, config.release("market-regime-calm"))
    assert calm.policy is config.rollout


def test_an_environment_built_in_code_merges_over_its_policy_too() -> None:
    config = EnvironmentConfig.model_validate(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Environment",
            "name": "local",
            "storage": {"allowedSchemes": ["s3"]},
            "releases": [
                {"model": "m", "inferenceService": "m", "pin": "m.yaml", "rollout": {"interval": 3}}
            ],
            "rollout": RolloutPolicy(steps=(20, 100)),
        }
    )
    assert (config.policy_for("m").steps, config.policy_for("m").interval_seconds) == ((20, 100), 3)


def test_the_overlays_classifier_is_judged_per_regime_and_downstream_on_its_graph() -> None:
    """The example overlay (what `make demo-ensemble` serves): the classifier's own shadow
    reads the outcome regime and replays through market-regime; its members keep the
    environment's policy (no shadow until the demo commits one)."""
    config = environment(OVERLAY)
    shadow = config.policy_for(CLASSIFIER).shadow
    assert shadow is not None
    assert (shadow.judge.outcome, shadow.judge.classes) == (
        "regime", ("calm", "volatile", "black_swan")
    )  # fmt: skip
    assert shadow.judge.downstream is not None
    assert (shadow.judge.downstream.graph, shadow.judge.downstream.outcome) == (
        "market-regime", "up"
    )  # fmt: skip
    assert config.policy_for("market-regime-volatile").shadow is None
