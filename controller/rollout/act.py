"""Carry out one rollout action: a commit to the environment's branch or a registry change.

Traffic only ever moves through Git: a step, a promotion and both halves of a rollback are
commits that Argo CD syncs, each saying why in its body, and so is a shadow phase's mirror on a
cluster (an Istio VirtualService beside the pin, removed by the commit that ends the phase).
The registry records what Git cannot: the champion alias, the quarantine of a version judged
worse (or the abort of a rollout that reached no verdict, which quarantines nothing) and the
analysis record. With an evidence recorder, a promotion and a passed shadow phase are signed as
evidence on the version when their commit lands, and made sure of again before the champion
alias moves (:mod:`controller.rollout.evidence_recorder`); a rollback records none.

What each commit edits and says is :mod:`controller.rollout.traffic_commits` (and
:mod:`controller.shadow.mirror_commits`); this module commits it, reports it to the proposal's
pull request, and makes the registry changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from controller.domain import QUARANTINE_TAG
from controller.errors import SluiceError, TransientError
from controller.manifests.manifest import ReleasePin
from controller.manifests.render import validate_rendered
from controller.manifests.storage_uri import map_storage_uri
from controller.null_ports import NoForge
from controller.ports import Forge, Notifier, ReleaseRepository, RolloutRegistry
from controller.rollout import traffic_commits
from controller.rollout.actions import (
    Abort,
    Action,
    EndShadow,
    EndSmoke,
    FinishRestore,
    Hold,
    Promote,
    Quarantine,
    RestorePrevious,
    SetChampion,
    SetWeight,
    StartMirror,
    StartRollback,
    StopMirror,
)
from controller.rollout.evidence_recorder import EvidenceRecorder
from controller.rollout.evidence_trailer import (
    CarriedEvidence,
    promotion_evidence,
    rollout_evidence,
    shadow_evidence,
)
from controller.rollout.messages import (
    RolloutCommit,
    render_rollout_comment,
    render_rollout_message,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import ReleaseRef, rollout_tag
from controller.rollout.pin_edits import PinEdit
from controller.rollout.record import analysis_tag, shadow_tag
from controller.rollout.telemetry import RolloutMetrics
from controller.rollout.traffic_commits import pinned_version
from controller.shadow.mirror import validate_virtual_service
from controller.shadow.mirror_commits import start_mirror, stop_mirror
from controller.text.commit_message import proposal_branch

__all__ = ["ActResult", "Actuator"]

_log = logging.getLogger("sluice.rollout")


@dataclass(frozen=True)
class ActResult:
    """What an action changed: the commit it pushed, if any; ``already_done`` when its edit
    found the pin in the intended state (another controller, or this one's lost push answer,
    did it) and nothing was committed, announced or commented."""

    commit: str | None = None
    message: str | None = None
    already_done: bool = False


def _now_iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat(timespec="seconds")


@dataclass
class Actuator:
    """Performs actions for one release against Git and the registry."""

    ref: ReleaseRef
    workspace: ReleaseRepository
    registry: RolloutRegistry
    notifier: Notifier
    metrics: RolloutMetrics
    forge: Forge = field(default_factory=NoForge)
    #: Who signs a promotion's and a passed shadow phase's evidence (None: none is recorded).
    evidence: EvidenceRecorder | None = None

    def act(self, action: Action, obs: ReleaseObservation, now: float) -> ActResult:
        """Carry out ``action``; actions that change nothing return an empty result."""
        match action:
            case SetWeight():
                return self._step(action, obs)
            case StartMirror():
                return self._commit(*start_mirror(self.ref, obs, action))
            case StopMirror():
                return self._commit(*stop_mirror(self.ref, obs, action))
            case EndShadow():
                return self._end_shadow(action, obs, now)
            case EndSmoke():
                return self._end_smoke(action, obs)
            case Promote():
                return self._promote(action, obs, now)
            case StartRollback():
                return self._start_rollback(action, obs, now)
            case RestorePrevious():
                return self._restore(action, obs)
            case FinishRestore():
                return self._finish_restore(action, obs)
            case Quarantine():
                self._quarantine(action, now)
            case Abort():
                self._abort(action, obs, now)
            case SetChampion():
                self._set_champion(action, obs, now)
            case Hold():
                self._record(obs, action)
            case _:
                pass
        return ActResult()

    # -- commits -------------------------------------------------------------------------

    def _commit(self, edit: PinEdit, commit: RolloutCommit) -> ActResult:
        overlay = self.ref.overlay

        def edit_and_validate(worktree: Path) -> None:
            edit(worktree)
            for document in validate_rendered(worktree / overlay, tree=worktree):
                if document.get("kind") == "VirtualService":
                    validate_virtual_service(document, source=f"{overlay} (rendered)")

        message = render_rollout_message(commit)
        outcome = self.workspace.commit_and_push(
            branch=self.ref.branch, base=self.ref.branch, edit=edit_and_validate, message=message
        )
        if outcome.attempts > 1:
            self.metrics.push_retries.inc(outcome.attempts - 1)
        if not outcome.committed:
            return ActResult(message=message, already_done=True)
        self._report(commit, outcome.sha)
        return ActResult(commit=outcome.sha, message=message)

    def _report(self, commit: RolloutCommit, sha: str) -> None:
        """Tell the proposal's pull request: a comment with the gates and a commit status.

        Best effort: the commit has landed and is what matters; a forge outage is logged and
        never holds a rollout back (a lost comment is not re-sent on the next pass).
        """
        state = {"rollback": "failure", "restore": "failure", "promote": "success"}.get(
            commit.action, "pending"
        )
        context = f"sluice/rollout/{commit.environment}"
        branch = proposal_branch(commit.environment, commit.model, commit.version)
        try:
            self.forge.report_status(sha, context=context, state=state, description=commit.headline)
            number = self.forge.find_pull_request(branch)
            if number is not None:
                self.forge.comment(number, render_rollout_comment(commit, sha))
        except SluiceError as exc:
            _log.warning("could not report %s to the forge: %s", commit.headline, exc.message)

    def _step(self, action: SetWeight, obs: ReleaseObservation) -> ActResult:
        result = self._commit(*traffic_commits.step(self.ref, action, obs))
        self.metrics.set_weight(obs.model, obs.environment, action.to_percent)
        return result

    def _end_shadow(self, action: EndShadow, obs: ReleaseObservation, now: float) -> ActResult:
        result = self._commit(*traffic_commits.end_shadow(self.ref, action, obs))
        if result.commit is not None:
            self._record_landed(shadow_evidence(action), pinned_version(obs), now)
        self._shadow_verdict(pinned_version(obs), "pass", "every check passed", now)
        self.metrics.set_weight(obs.model, obs.environment, action.to_percent)
        return result

    def _end_smoke(self, action: EndSmoke, obs: ReleaseObservation) -> ActResult:
        result = self._commit(*traffic_commits.end_smoke(self.ref, action, obs))
        self.metrics.set_weight(obs.model, obs.environment, action.to_percent)
        return result

    def _shadow_verdict(self, version: int, verdict: str, reason: str, now: float) -> None:
        """The shadow verdict on the version, for ``sluice status`` and MLflow's UI."""
        tag = shadow_tag(self.ref.environment.name)
        self.registry.set_version_tags(
            self.ref.release.model,
            version,
            {tag: f"{verdict}: {reason}"[:500], f"{tag}.at": _now_iso(now)},
        )

    def _promote(self, action: Promote, obs: ReleaseObservation, now: float) -> ActResult:
        version = pinned_version(obs)
        result = self._commit(*traffic_commits.promote(self.ref, action, obs))
        self.metrics.set_weight(obs.model, obs.environment, 0)
        if result.commit is not None:
            self._record_landed(
                promotion_evidence(action, obs, self.ref.policy.steps), version, now
            )
            self.notifier.notify(
                f"{obs.model} v{version} promoted in {obs.environment}",
                "Every gate passed at every canary step.",
            )
        return result

    def _start_rollback(
        self, action: StartRollback, obs: ReleaseObservation, now: float
    ) -> ActResult:
        version = pinned_version(obs)
        aborted = action.verdict == "aborted"
        if obs.shadow_percent is not None:
            self._shadow_verdict(version, "aborted" if aborted else "fail", action.reason, now)
        result = self._commit(*traffic_commits.start_rollback(self.ref, action, obs))
        self.metrics.set_weight(obs.model, obs.environment, 0)
        if result.commit is not None:
            self.notifier.notify(
                f"{obs.model} v{version} {'aborted' if aborted else 'rolled back'} in "
                f"{obs.environment}",
                action.reason,
                severity="error",
            )
        return result

    def _restore(self, action: RestorePrevious, obs: ReleaseObservation) -> ActResult:
        env = self.ref.environment
        previous = self.registry.resolve(obs.model, version=action.previous)
        pin = ReleasePin(
            model=obs.model,
            version=previous.version,
            storage_uri=map_storage_uri(previous.artifact_uri, env.storage, environment=env.name),
            run_id=previous.run_id,
            previous_version=None,
            canary_percent=None,
        )
        return self._commit(*traffic_commits.restore_previous(self.ref, action, obs, pin))

    def _finish_restore(self, action: FinishRestore, obs: ReleaseObservation) -> ActResult:
        return self._commit(*traffic_commits.finish_restore(self.ref, action, obs))

    # -- registry ------------------------------------------------------------------------

    def _quarantine(self, action: Quarantine, now: float) -> None:
        self.registry.set_version_tags(
            self.ref.release.model,
            action.version,
            {
                QUARANTINE_TAG: action.reason[:500],
                f"{QUARANTINE_TAG}.environment": self.ref.environment.name,
                f"{QUARANTINE_TAG}.at": _now_iso(now),
            },
        )

    def _abort(self, action: Abort, obs: ReleaseObservation, now: float) -> None:
        """The rollout ended without a verdict: say so on the version, keyed by the rollback
        commit so that the next rollout of the same version starts clean."""
        tag = rollout_tag(self.ref.environment.name)
        self.registry.set_version_tags(
            self.ref.release.model,
            action.version,
            {
                tag: "aborted",
                f"{tag}.reason": action.reason[:500],
                f"{tag}.at": _now_iso(now),
                f"{tag}.commit": obs.pin_commit,
            },
        )

    def _set_champion(self, action: SetChampion, obs: ReleaseObservation, now: float) -> None:
        model, alias = self.ref.release.model, self.ref.release.champion_alias
        if obs.pin_action == "promote":
            self._ensure_promotion_evidence(action.version, now)
        tags = {f"sluice.promoted.{self.ref.environment.name}": _now_iso(now)}
        if action.previous is not None:
            tags["sluice.previous_champion"] = str(action.previous)
        self.registry.set_version_tags(model, action.version, tags)
        self.registry.set_alias(model, alias, action.version)

    def _record(self, obs: ReleaseObservation, action: Hold) -> None:
        self.registry.set_version_tags(
            obs.model, pinned_version(obs), {analysis_tag(obs.environment): action.record.to_json()}
        )

    # -- evidence ------------------------------------------------------------------------

    def _record_landed(self, evidence: CarriedEvidence, version: int, now: float) -> None:
        """Record the evidence of a commit that just landed. Best effort: the commit is what
        matters, and the promoted version's next steps record what this could not."""
        if self.evidence is None:
            return
        try:
            self._ensure(evidence, version, now)
        except SluiceError as exc:
            _log.warning(
                "%s evidence of %s v%d is not recorded yet (%s): it will be once v%d serves "
                "everything",
                evidence.kind, self.ref.release.model, version, exc.message, version,
            )  # fmt: skip

    def _ensure_promotion_evidence(self, version: int, now: float) -> None:
        """Before the champion alias moves: every piece of evidence the commits of the
        promoted version's rollout carry is recorded, once. A dependency that does not answer
        fails the pass, which is decided again; a permanent refusal (a version without a run
        to keep evidence in) is logged, and the rollout goes on without it."""
        if self.evidence is None:
            return
        changes = self.workspace.changes(self.ref.branch, self.ref.pin_path)
        for evidence in rollout_evidence(changes, version):
            try:
                self._ensure(evidence, version, now)
            except TransientError:
                raise
            except SluiceError as exc:
                _log.error(
                    "%s evidence of %s v%d is not recorded: %s",
                    evidence.kind, self.ref.release.model, version, exc.message,
                )  # fmt: skip

    def _ensure(self, evidence: CarriedEvidence, version: int, now: float) -> None:
        assert self.evidence is not None
        self.evidence.ensure(
            evidence, environment=self.ref.environment.name, model=self.ref.release.model,
            version=version, now=now,
        )  # fmt: skip
