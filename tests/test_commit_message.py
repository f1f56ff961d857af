"""Proposal commit messages read well in Argo CD's UI and in git log."""

from __future__ import annotations

from controller.text.commit_message import (
    SUBJECT_LIMIT,
    ProposalMessage,
    proposal_branch,
    render_proposal_message,
)


def message(**changes: object) -> ProposalMessage:
    values = {
        "model": "fraud-detector", "version": 8, "environment": "staging",
        "previous_version": 7, "canary_percent": 10, "storage_uri": "s3://b/8",
        "run_id": "abc", "run_url": "http://mlflow/#/runs/abc",
        "metrics": {"roc_auc": 0.91, "champion_roc_auc": 0.9},
    }  # fmt: skip
    return ProposalMessage(**{**values, **changes})  # type: ignore[arg-type]


def test_subject_says_what_moves_where() -> None:
    """The subject names model, version, environment and canary weight."""
    assert render_proposal_message(message()).splitlines()[0] == (
        "fraud-detector v8 → staging (canary 10%)"
    )


def test_first_deploy_is_named_as_such() -> None:
    """Without a previous version the subject says first deploy."""
    text = render_proposal_message(message(previous_version=None, canary_percent=None))
    assert text.startswith("fraud-detector v8 → staging (first deploy)\n\n")


def test_long_model_names_keep_version_and_environment_within_64() -> None:
    """A long model name is shortened so version, environment and mode stay visible."""
    subject = render_proposal_message(message(model="x" * 80)).splitlines()[0]
    assert len(subject) <= SUBJECT_LIMIT
    assert subject.endswith("… v8 → staging (canary 10%)")


def test_body_carries_evidence_and_trailers() -> None:
    """The body has the run link and metrics against the champion; trailers end it."""
    text = render_proposal_message(message())
    assert "Run: http://mlflow/#/runs/abc" in text
    assert "roc_auc 0.9100 (champion 0.9000)" in text
    assert text.rstrip().endswith(
        "Sluice-Model: fraud-detector\nSluice-Version: 8\nSluice-Env: staging\nSluice-Run: abc"
    )


def test_branch_is_deterministic() -> None:
    """The same change always names the same branch."""
    assert proposal_branch("staging", "fraud-detector", 8) == "sluice/staging/fraud-detector/v8"
