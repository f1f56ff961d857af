"""The demos' policy commits: the shadow phase lands inside ``rollout`` of the environment's real
``sluice.yaml``, whatever top-level keys follow it (a ``graphRollout`` block once made both
demos stop with "must end with its rollout block")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.demo.ensemble import SHADOW_POLICY as ENSEMBLE_SHADOW_POLICY
from controller.demo.shadow_chapter import add_shadow_policy
from controller.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("policy", "block"),
    [
        ("manifests/overlays/local/sluice.yaml", None),
        ("models/market_regime/overlay/sluice.yaml", ENSEMBLE_SHADOW_POLICY),
    ],
)
def test_the_shadow_block_lands_under_rollout_and_nothing_else_moves(
    policy: str, block: str | None
) -> None:
    text = (ROOT / policy).read_text()
    changed = add_shadow_policy(text) if block is None else add_shadow_policy(text, block)
    before, after = yaml.safe_load(text), yaml.safe_load(changed)
    assert "shadow" in after["rollout"]
    del after["rollout"]["shadow"]
    assert after == before
    assert list(yaml.safe_load(changed)) == list(before)  # top-level order kept
    # Only lines were added: every original line is still there, in order.
    added = iter(changed.splitlines())
    assert all(line in added for line in text.splitlines())


def test_a_block_after_later_keys_and_their_comments_stays_with_them() -> None:
    text = "rollout:\n  steps: [10]\n# the graphs' own clock\ngraphRollout:\n  steps: [50]\n"
    changed = add_shadow_policy(text, "  shadow:\n    mirrorPercent: 100\n")
    assert changed == (
        "rollout:\n  steps: [10]\n  shadow:\n    mirrorPercent: 100\n"
        "# the graphs' own clock\ngraphRollout:\n  steps: [50]\n"
    )


def test_a_policy_with_a_shadow_phase_already_is_refused() -> None:
    with pytest.raises(ConfigError, match="without a shadow phase"):
        add_shadow_policy("rollout:\n  shadow:\n    mirrorPercent: 100\n")
