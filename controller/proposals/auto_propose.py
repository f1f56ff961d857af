"""``sluice serve`` proposes to the next environment by itself once a version earned it.

For every environment whose ``promotion:`` sets ``autoPropose`` (the default), each pass looks
at every release: the version its upstream environment(s) fully promoted (pinned at 100 %, no
canary, shadow or smoke phase: :func:`~controller.proposals.evidence_gate.upstream_pins`) is
the candidate, and it is proposed (:func:`~controller.proposals.propose.propose`, which checks
the evidence again before anything is written) once
:func:`~controller.proposals.evidence_gate.check_promotion` finds its evidence complete, the
approval aside. A quarantined or superseded version is never complete, so never proposed.

With an :class:`~controller.proposals.approval_evidence.ApprovalRecorder` (``sluice serve``
gives it one when it has an evidence key and a forge with pull requests), each pass also looks
at the pull request of each release of an environment whose ``promotion.approval.required``
is set, and records its approval once given.

Once per version, across restarts: a proposal made is recorded on the version as the tag
``sluice.promotion.proposed.ENV`` (the pull request, or the branch and commit), and a version
carrying it, or one the environment already pins (or pins a later version than), is not looked
at again. The state lives in the registry and Git, none in the process but the last line said
about each release: a version that waits gets one log line saying what it waits for, again
only when that changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import SluiceError
from controller.proposals.evidence_gate import (
    check_promotion,
    pinned_version,
    read_environments,
    upstream_pins,
)
from controller.proposals.propose import ProposalRequest, ProposalResult
from controller.redact import redact

if TYPE_CHECKING:
    from controller.manifests.environment import EnvironmentConfig
    from controller.ports import (
        AttestationStore,
        EvidenceStore,
        ProposalRegistry,
        ReleaseRepository,
    )
    from controller.proposals.approval_evidence import ApprovalRecorder

__all__ = ["PROPOSED_TAG_PREFIX", "AutoProposer", "proposed_tag"]

_log = logging.getLogger("sluice.promotion")
#: The version tag saying a proposal to ENV was made by itself: ``...proposed.ENV``.
PROPOSED_TAG_PREFIX = "sluice.promotion.proposed."


def proposed_tag(environment: str) -> str:
    """The tag on a version that ``sluice serve`` proposed to ``environment`` already."""
    return f"{PROPOSED_TAG_PREFIX}{environment}"


@dataclass(frozen=True)
class Outcome:
    """What one pass did for one release: ``proposed``, ``waiting`` or ``idle``, and why."""

    environment: str
    model: str
    state: str
    line: str
    version: int | None = None
    #: What the line is about: the ``proposal``, or the pull request's ``approval``.
    topic: str = "proposal"


class AutoProposer:
    """One pass over the environments with ``promotion.autoPropose`` (:meth:`run_once`), or a
    pass every interval until stopped (:meth:`run_forever`). Git is read as the workspace's
    last sync left it (``sluice serve``'s watcher fetches every interval)."""

    def __init__(
        self,
        workspace: ReleaseRepository,
        registry: ProposalRegistry,
        evidence: EvidenceStore,
        attestations: AttestationStore,
        propose_version: Callable[[ProposalRequest], ProposalResult],
        *,
        environments: Sequence[str] | None = None,
        approvals: ApprovalRecorder | None = None,
    ) -> None:
        self._workspace = workspace
        self._registry = registry
        self._evidence = evidence
        self._attestations = attestations
        self._propose = propose_version
        self._only = tuple(environments) if environments else None
        self._approvals = approvals
        self._said: dict[tuple[str, str, str], str] = {}

    def _configs(self) -> list[EnvironmentConfig]:
        """The environments with ``promotion:`` this pass proposes to or records approvals
        into."""
        configs = read_environments(self._workspace, self._only)
        return [
            c
            for c in configs
            if c.promotion is not None
            and (
                c.promotion.auto_propose
                or (self._approvals is not None and c.promotion.approval.required)
            )
        ]

    def _say(self, outcome: Outcome, level: int = logging.INFO) -> None:
        """Log the release's line when it differs from the last one said about it."""
        key = (outcome.environment, outcome.model, outcome.topic)
        if self._said.get(key) != outcome.line:
            self._said[key] = outcome.line
            _log.log(level, "%s", outcome.line)

    def _release(self, config: EnvironmentConfig, model: str) -> Outcome:
        env = config.name
        found = [v for v in upstream_pins(self._workspace, env, model).values() if v is not None]
        if not found:
            return Outcome(env, model, "idle", f"{model} → {env}: nothing promoted upstream yet")
        version = max(found)
        what = f"{model} v{version} → {env}"
        current = pinned_version(self._workspace, config, model)
        if current is not None and current >= version:
            return Outcome(env, model, "idle", f"{what}: {env} pins v{current}", version)
        tags = self._registry.resolve(model, version=version).tags
        if proposed_tag(env) in tags:
            line = f"{what}: proposed already ({tags[proposed_tag(env)]})"
            return Outcome(env, model, "idle", line, version)
        check = check_promotion(
            workspace=self._workspace, registry=self._registry, evidence=self._evidence,
            attestations=self._attestations, model=model, version=version, environment=env,
            before_pull_request=True,
        )  # fmt: skip
        if check is None or not check.verdict.complete:
            lines = check.verdict.lines() if check is not None else ["no promotion policy"]
            return Outcome(
                env, model, "waiting", f"{what}: waiting for {'; '.join(lines)}", version
            )
        result = self._propose(ProposalRequest(model=model, environment=env, version=version))
        where = result.pull_request_url or f"{result.branch}@{(result.commit or '')[:12]}"
        self._registry.set_version_tags(model, version, {proposed_tag(env): where})
        return Outcome(
            env, model, "proposed", f"{what}: evidence complete, proposed ({where})", version
        )

    def run_once(self) -> list[Outcome]:
        """One pass: every release of every auto-proposing environment (see the module doc).
        A release whose pass fails is logged in one redacted line and retried next pass."""
        outcomes: list[Outcome] = []
        with self._workspace.locked():  # the watcher's fetch must not move refs mid-read
            for config in self._configs():
                assert config.promotion is not None
                for release in config.releases:
                    if config.promotion.auto_propose:
                        outcomes.append(self._guarded(config, release.model, "proposal"))
                    if self._approvals is not None and config.promotion.approval.required:
                        outcomes.append(self._guarded(config, release.model, "approval"))
        return outcomes

    def _guarded(self, config: EnvironmentConfig, model: str, topic: str) -> Outcome:
        """One look at a release, logged; a failure is one redacted line, retried next pass."""
        try:
            if topic == "proposal":
                outcome = self._release(config, model)
            else:
                outcome = self._approval(config, model)
        except SluiceError as exc:
            line = redact(" ".join(str(exc).split()))
            outcome = Outcome(config.name, model, "error", line, topic=topic)
            self._say(outcome, logging.WARNING)
        else:
            self._say(outcome)
        return outcome

    def _approval(self, config: EnvironmentConfig, model: str) -> Outcome:
        assert self._approvals is not None
        found = self._approvals.release(config, model)
        recorded = [o for o in found if o.state == "recorded"]
        said = recorded or [o for o in found if o.state == "waiting"] or found
        return Outcome(
            config.name, model, said[0].state, "; ".join(o.line for o in said),
            said[0].version, topic="approval",
        )  # fmt: skip

    def run_forever(self, stop: threading.Event, interval_seconds: float) -> None:
        """A pass now, then one every ``interval_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a bug of ours must not end the loop
                _log.error("auto-propose pass: %s", redact(f"{type(exc).__name__}: {exc}"))
            stop.wait(interval_seconds)
