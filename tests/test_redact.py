"""Secrets are masked before anything is shown."""

from __future__ import annotations

import pytest

from controller.redact import redact, register_secret


def test_url_credentials_are_masked() -> None:
    """user:password in a URL never survives."""
    assert redact("push to https://bot:s3cr3t@github.com/o/r.git failed") == (
        "push to https://***@github.com/o/r.git failed"
    )


def test_environment_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value of GITHUB_TOKEN is masked wherever it appears."""
    monkeypatch.setenv("GITHUB_TOKEN", "abcd1234efgh")
    assert redact("token abcd1234efgh rejected") == "token *** rejected"


def test_registered_secrets_are_masked() -> None:
    """A secret registered at runtime is masked."""
    register_secret("webhook-secret-value")
    assert "webhook-secret-value" not in redact("bad signature for webhook-secret-value")


def test_bearer_tokens_are_masked() -> None:
    """An Authorization header echoed by a library is masked."""
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y") == "Authorization: Bearer ***"
