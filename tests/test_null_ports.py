"""The null objects of the ports: what ``--forge local`` is, held to what its callers expect."""

from __future__ import annotations

import pytest

from controller.domain import ChangeRequest
from controller.errors import ConfigError, PermanentError
from controller.null_ports import NO_FORGE, NoForge
from controller.ports import Forge


def test_no_forge_opens_no_pull_requests_and_reports_nowhere() -> None:
    """Access, statuses and comments succeed doing nothing; no branch became a pull request."""
    forge: Forge = NoForge()
    assert forge.opens_pull_requests is False
    forge.check_access()
    forge.report_status("a" * 40, context="sluice/validate", state="success", description="ok")
    forge.comment(1, "Canary at 10%")
    assert forge.find_pull_request("sluice/staging/fraud/v2") is None
    assert NO_FORGE.opens_pull_requests is False


def test_no_forge_refuses_what_only_a_forge_with_pull_requests_does() -> None:
    """Opening a pull request, dispatching a workflow, reading approvals and rewriting a body
    are refused, naming the local path."""
    change = ChangeRequest(
        branch="sluice/staging/fraud/v2", base="main", title="t", body="b", labels=(),
        head_sha="a" * 40, supersedes_prefix="sluice/staging/fraud/",
    )  # fmt: skip
    with pytest.raises(PermanentError, match="merge it into main by hand"):
        NO_FORGE.open_or_update(change)
    with pytest.raises(ConfigError, match="SLUICE_RETRAIN_COMMAND"):
        NO_FORGE.dispatch("retrain", {})
    with pytest.raises(PermanentError, match="no pull request #3 to read approvals of"):
        NO_FORGE.approvals(3)
    with pytest.raises(PermanentError, match="no pull request #3 to rewrite"):
        NO_FORGE.rewrite_body(3, str.upper)
