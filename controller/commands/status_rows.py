"""The rows of ``sluice status``: per release, what serves, the rollout's phase and its gates.

:func:`status_rows` observes each release through a :class:`~controller.rollout.reconcile.
Reconciler` without acting, and adds what the registry keeps beside it (the lease holder, the
shadow verdict, drift and the last retraining). The table, its notes and the live views are
drawn from the rows by :mod:`controller.status.status_view` and :mod:`controller.commands.status`.
"""

from __future__ import annotations

import time
from typing import Any

from controller.backends.mlflow_registry import MlflowRegistry
from controller.commands.rollout_backends import TargetKind
from controller.domain import QUARANTINE_TAG
from controller.errors import ConfigError, SluiceError
from controller.lease import lease_name
from controller.ports import (
    RolloutRegistry,
)
from controller.retrain.record import (
    RetrainRecord,
    describe_retraining,
    last_retrain_tag,
    turned_away_tag,
)
from controller.rollout.actions import (
    Action,
    Analyze,
    AnalyzeShadow,
    Hold,
    Smoke,
    Wait,
)
from controller.rollout.decide import decide
from controller.rollout.messages import gates_in_message
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import (
    ReleaseRef,
    load_environment_config,
    load_release,
    observe,
    rollout_tag,
)
from controller.rollout.pass_report import phase_of
from controller.rollout.reconcile import Reconciler
from controller.rollout.record import shadow_tag
from controller.status.status_view import next_step
from controller.target_types import TargetObservation

__all__ = ["status_row", "status_rows"]


def status_rows(
    reconciler: Reconciler, environment: str | None, *, target: TargetKind = "local"
) -> list[dict[str, Any]]:
    """The status of every release in ``environment`` (default: every environment in Git),
    JSON-ready, as ``sluice status --json`` prints it."""
    workspace = reconciler.workspace
    workspace.sync()
    default = workspace.default_branch()
    names = [environment] if environment else workspace.list_dir(default, "manifests/overlays")
    rows: list[dict[str, Any]] = []
    now = time.time()
    for name in sorted(names):
        try:
            models = [r.model for r in load_environment_config(workspace, name).releases]
        except ConfigError:
            if environment:
                raise
            continue
        for model in models:
            row = status_row(reconciler, name, model, now)
            row["hint"] = next_step(row, target=target)
            rows.append(row)
    return rows


def _lease_row(reconciler: Reconciler, environment: str, model: str, now: float) -> object:
    """The live lease of the release, JSON-ready (None: no controller holds it)."""
    if reconciler.lease is None:
        return None
    try:
        found = reconciler.lease.store.read(lease_name(environment, model))
    except SluiceError as exc:
        return {"error": exc.message}
    if found is None or not found[0].live(now):
        return None
    lease = found[0]
    return {
        "holder": lease.holder,
        "acquiredAt": _iso(lease.acquired_at),
        "renewedAt": _iso(lease.renewed_at),
        "expiresAt": _iso(lease.expires_at),
        "expiresAtEpoch": lease.expires_at,
        "expiresInSeconds": round(lease.expires_at - now, 1),
        "requestedBy": lease.requested_by,
    }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _challenger(
    registry: RolloutRegistry, model: str, alias: str, environment: str
) -> tuple[int | None, str | None]:
    """The version the release's alias names and its shadow verdict in ``environment``."""
    try:
        version = registry.resolve(model, alias=alias)
    except SluiceError:
        return None, None
    return version.version, version.tags.get(shadow_tag(environment))


class _TargetUnknown:
    """A target that could not be asked (unreachable, no credentials): nothing observed."""

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        return TargetObservation(exists=False)


def status_row(
    reconciler: Reconciler, environment: str, model: str, now: float
) -> dict[str, object]:
    ref = load_release(reconciler.workspace, environment, model)
    try:
        obs = reconciler.observe(environment, model)
        note = ""
    except SluiceError as exc:
        # Git and the registry still say what is pinned and why; the target's error is shown.
        obs = observe(ref, reconciler.workspace, reconciler.registry, _TargetUnknown())
        note = exc.message
    action = decide(obs, ref.policy, now)
    canary = obs.pin.canary_percent
    serving = obs.pin.previous_version if canary not in (None, 100) else obs.pin.version
    challenger, verdict = _challenger(reconciler.registry, model, ref.release.alias, environment)
    return {
        "environment": environment,
        "model": model,
        "version": obs.pin.version,
        "serving": f"v{serving}" if serving else None,
        "champion": obs.champion,
        "challenger": challenger,
        "shadowVerdict": verdict,
        "shadowPercent": obs.shadow_percent,
        "canaryPercent": canary if canary not in (None, 100) else None,
        "smoke": obs.smoke,
        "phase": phase_of(action),
        "lease": _lease_row(reconciler, environment, model, now),
        "secondsInPhase": max(0.0, now - obs.pin_changed_at),
        "quarantined": obs.quarantined,
        "aborted": obs.aborted,
        "target": note or ("synced" if obs.synced else "not synced"),
        **_watch_fields(reconciler, ref, obs, action, now),
        "retraining": _retraining_row(reconciler.registry, environment, model, now),
        "drift": _drift_row(reconciler.registry, obs.pin.version, obs.pin.run_id),
    }


def _drift_row(
    registry: RolloutRegistry, version: int | None, run_id: str | None
) -> dict[str, Any] | None:
    """Whether drift is watched for the pinned version: only when its training run logged a
    reference profile (None: nothing pinned, or no registry to ask)."""
    if not isinstance(registry, MlflowRegistry) or version is None or run_id is None:
        return None
    try:
        logged = registry.has_reference_profile(run_id)
    except SluiceError as exc:
        return {"on": None, "summary": f"unknown: {exc.message}"}
    if logged:
        return {"on": True, "summary": f"on: v{version}'s training profile"}
    return {
        "on": False,
        "summary": f"off: v{version} logged no reference_profile.json (its training can log one "
        "with controller.training.log_reference_profile)",
    }


def _retraining_row(
    registry: RolloutRegistry, environment: str, model: str, now: float
) -> dict[str, Any] | None:
    """The release's last retraining and the last drift alert turned away, from the registered
    model's ``sluice.retrain.ENV.*`` tags (None: never asked for, or no registry to ask)."""
    if not isinstance(registry, MlflowRegistry):
        return None
    try:
        tags = registry.registered_model_tags(model)
    except SluiceError as exc:
        return {"summary": f"unknown: {exc.message}", "error": exc.message}
    last = RetrainRecord.decode(tags.get(last_retrain_tag(environment)))
    turned_away = RetrainRecord.decode(tags.get(turned_away_tag(environment)))
    if last is None and turned_away is None:
        return None
    return {
        **(last.to_json() if last else {}),
        "turnedAway": turned_away.to_json() if turned_away else None,
        "summary": describe_retraining(last, turned_away, now),
    }


def _watch_fields(
    reconciler: Reconciler, ref: ReleaseRef, obs: ReleaseObservation, action: Action, now: float
) -> dict[str, Any]:
    """What ``status --watch`` and the page add: the last gates (this step's analysis record,
    else the gates in the body of the commit that started the step), when the phase began and
    the next analysis is due, the pinned version's rollback, the versions quarantined or
    aborted here, and the revisions a chart compares."""
    record = obs.analysis if obs.analysis and obs.analysis.commit == obs.pin_commit else None
    results: tuple[Any, ...] = record.results if record else ()
    source = f"analysis {record.looks} of this step" if record and results else None
    if not results and obs.pin_commit:
        message = reconciler.workspace.message(obs.pin_commit) or ""
        results = gates_in_message(message)
        source = f"commit {obs.pin_commit[:12]}" if results else None
    due: float | None = None
    if isinstance(action, Analyze | AnalyzeShadow | Smoke):
        due = now
    elif isinstance(action, Hold):
        due = now + ref.policy.interval_seconds
    elif isinstance(action, Wait) and action.retry_after is not None:
        due = now + action.retry_after
    rolled_back = None
    if obs.rollback_reason and obs.pin.canary_percent == 0 and not obs.smoke:
        verdict = obs.rollback_verdict or "failed"
        rolled_back = {"reason": obs.rollback_reason, "verdict": f"rolled back ({verdict})"}
    canary = obs.target.latest_created
    primary = next(
        (t.revision for t in obs.target.traffic if not t.latest and t.revision != canary), None
    )
    return {
        "gates": [
            {"gate": r.gate, "verdict": r.verdict.value, "summary": r.summary} for r in results
        ],
        "gatesFrom": source,
        "phaseSince": obs.pin_changed_at or None,
        "nextAnalysisAt": due,
        "rolledBack": rolled_back,
        "versions": _judged_versions(reconciler.registry, ref, obs.pin.version),
        "revisions": (
            {
                "namespace": obs.target.namespace,
                "configuration": obs.target.configuration,
                "canary": canary,
                "primary": primary,
            }
            if canary and primary
            else None
        ),
    }


def _judged_versions(
    registry: RolloutRegistry, ref: ReleaseRef, pinned: int | None
) -> list[dict[str, Any]]:
    """The model's versions quarantined, or whose rollout here was aborted (newest first, the
    pinned one left to the row itself); empty when the registry cannot list versions."""
    if not isinstance(registry, MlflowRegistry):
        return []
    try:
        versions = registry.versions(ref.release.model)
    except SluiceError:
        return []
    judged = []
    aborted_tag = rollout_tag(ref.environment.name)
    for version in reversed(versions):
        if version.version == pinned:
            continue
        if QUARANTINE_TAG in version.tags:
            state, reason = "quarantined", version.tags[QUARANTINE_TAG]
        elif version.tags.get(aborted_tag) == "aborted":
            state = "aborted"
            reason = version.tags.get(f"{aborted_tag}.reason") or "aborted"
        else:
            continue
        judged.append({"version": version.version, "state": state, "reason": reason})
    return judged


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
