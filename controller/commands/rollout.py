"""``sluice rollout``, ``rollback`` and ``status``: wire the backends to the rollout core.

The composition root of the rollout commands: the only place their concrete backends
(MLflow, Git, Prometheus, Locust, the local target or a cluster, the notifier) are named.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace, Identity
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.propose import default_remote
from controller.errors import ConfigError, InputError, SluiceError
from controller.lease import Lease, LeaseKeeper, lease_name
from controller.null_ports import NO_FORGE
from controller.ports import (
    Forge,
    LeaseStore,
    LiveRequestCounts,
    MetricsSource,
    Notifier,
    PredictionStore,
    RolloutRegistry,
    Target,
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
    Outcome,
    Quarantine,
    RestorePrevious,
    Smoke,
    StartRollback,
    Wait,
)
from controller.rollout.analysis import Analyzer
from controller.rollout.decide import decide, manual_rollback
from controller.rollout.messages import gates_in_message
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import (
    QUARANTINE_TAG,
    ReleaseRef,
    load_environment_config,
    load_release,
    observe,
    rollout_tag,
)
from controller.rollout.pass_report import PassReport, phase_of
from controller.rollout.reconcile import Reconciler
from controller.rollout.record import shadow_tag
from controller.settings import Settings
from controller.status_view import next_step, status_notes, status_table
from controller.target_types import TargetObservation

__all__ = [
    "TargetKind",
    "build_reconciler",
    "run_rollback",
    "run_rollout",
    "run_status",
    "status_rows",
]

TargetKind = Literal["local", "kubernetes"]
#: How much longer than a lease's duration ``sluice rollback`` waits for it (polling, clocks).
_LEASE_WAIT_SLACK_SECONDS = 5.0


def _local_root(settings: Settings) -> Path:
    return (settings.state_dir / "local").resolve()


def _local_stack_url(settings: Settings, component: str) -> str | None:
    from controller.local.stack import STACK_FILE
    from controller.local.state import read_json

    stack = read_json(_local_root(settings) / STACK_FILE) or {}
    url = (stack.get(component) or {}).get("url")
    return str(url) if url else None


def _target(settings: Settings, kind: TargetKind) -> Target:
    if kind == "local":
        from controller.local.target import LocalTarget

        return LocalTarget(_local_root(settings))
    if not settings.argocd_url:
        raise ConfigError("--target kubernetes needs Argo CD: set SLUICE_ARGOCD_URL")
    if settings.argocd_auth_token is None:
        raise ConfigError("--target kubernetes needs an Argo CD token: set ARGOCD_AUTH_TOKEN")
    from controller.backends.kubernetes_target import KubernetesTarget

    return KubernetesTarget(
        settings.argocd_url,
        settings.argocd_auth_token.get_secret_value(),
        application_for=settings.argocd_application,
        namespace=settings.kubernetes_namespace,
    )


def _metrics(settings: Settings, kind: TargetKind) -> MetricsSource | None:
    url = settings.prometheus_url
    if url is None and kind == "local":
        url = _local_stack_url(settings, "prometheus")
    if url is None:
        return None
    from controller.backends.prometheus import PrometheusSource

    token = settings.prometheus_bearer_token
    return PrometheusSource(url, bearer_token=token.get_secret_value() if token else None)


def _notifier(settings: Settings) -> Notifier:
    if settings.notify_webhook_url is None:
        from controller.notify import LogNotifier

        return LogNotifier()
    from controller.backends.slack_notifier import SlackWebhookNotifier

    return SlackWebhookNotifier(settings.notify_webhook_url.get_secret_value())


def build_reconciler(
    settings: Settings, *, target: TargetKind, remote: str | None, forge: Forge = NO_FORGE
) -> Reconciler:
    """Every backend of a rollout, from the settings."""
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    tracking_uri = settings.mlflow_tracking_uri
    if target == "local" and "mlflow_tracking_uri" not in settings.model_fields_set:
        # The local stack's MLflow, unless one was given explicitly.
        tracking_uri = _local_stack_url(settings, "mlflow") or tracking_uri
    registry = MlflowRegistry(tracking_uri)
    workspace = GitWorkspace(
        remote or settings.git_remote or default_remote(),
        settings.state_dir / "git",
        identity=Identity(settings.git_author_name, settings.git_author_email),
    )
    from controller.backends.locust_load import LocustLoadGenerator

    deployed_to = _target(settings, target)
    analyzer = Analyzer(
        registry=registry,
        metrics=_metrics(settings, target),
        load=LocustLoadGenerator(),
        report_dir=settings.state_dir / "reports",
        # The local router counts each revision's answers live; a cluster's come from Prometheus.
        counters=deployed_to if isinstance(deployed_to, LiveRequestCounts) else None,
    )
    return Reconciler(
        workspace=workspace,
        registry=registry,
        target=deployed_to,
        analyzer=analyzer,
        notifier=_notifier(settings),
        forge=forge,
        predictions=_prediction_log(settings, target),
        lease=LeaseKeeper(
            _lease_store(settings, workspace), duration_seconds=settings.rollout_lease_seconds
        ),
    )


def _lease_store(settings: Settings, workspace: GitWorkspace) -> LeaseStore:
    """Where the rollout leases are kept: a ref in the GitOps remote, or a cluster's Leases."""
    if settings.rollout_lease_store == "git":
        return GitLeaseStore(workspace)
    from controller.backends.kubernetes_lease import (
        KubernetesLeaseStore,
        default_lease_namespace,
    )

    return KubernetesLeaseStore(settings.rollout_lease_namespace or default_lease_namespace())


def _prediction_log(settings: Settings, target: TargetKind) -> PredictionStore | None:
    """Where shadow phases read mirrored answers: the configured log, or the local router's."""
    from controller.backends.sqlite_prediction_log import SqlitePredictionLog
    from controller.commands.feedback import prediction_log_path

    if settings.prediction_log_path is None and target != "local":
        return None
    return SqlitePredictionLog(prediction_log_path(settings))


def _print_pass(report: PassReport, console: Console) -> None:
    stamp = time.strftime("%H:%M:%S")
    weight = f" at {report.canary_percent}%" if report.canary_percent is not None else ""
    version = f"v{report.version}{weight}" if report.version is not None else "-"
    lines = [f"{stamp} {report.model} {version} [{report.phase}] {report.detail}"]
    lines += [f"         {result.verdict.value:<12} {result.summary}" for result in report.results]
    for line in lines:
        # Plain text, never wrapped: "[analysing]" is no Rich markup, and a log keeps it whole.
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _pass_key(report: PassReport) -> tuple[object, ...]:
    """What a pass printed, but its time: a pass with the same key says nothing new."""
    return (report.model, report.version, report.canary_percent, report.phase, report.detail)


def exit_code(report: PassReport) -> int:
    """0 promoted or nothing to do, 1 rolled back or failed, 0 while still running (--once)."""
    return 1 if report.outcome in (Outcome.ROLLED_BACK, Outcome.FAILED) else 0


def run_rollout(
    settings: Settings,
    *,
    model: str,
    environment: str,
    once: bool,
    target: TargetKind,
    remote: str | None,
    as_json: bool,
    console: Console,
    forge: Forge = NO_FORGE,
) -> int:
    """One pass (``--once``) or passes until the rollout ends; returns the exit code.

    Each pass prints its lines (piped, a pass that only repeats the one before prints nothing:
    one line per change); in a terminal, the release's status is redrawn under them, as
    ``sluice status --watch`` draws it, until the rollout ends."""
    reconciler = build_reconciler(settings, target=target, remote=remote, forge=forge)
    reports: list[PassReport] = []
    printed: list[tuple[object, ...]] = []

    def print_changed(report: PassReport, out: Console) -> None:
        key = _pass_key(report)
        if printed and printed[-1] == key and not report.results and report.commit is None:
            return
        printed.append(key)
        _print_pass(report, out)

    def on_pass(report: PassReport) -> None:
        reports.append(report)
        if not as_json:
            print_changed(report, console)

    try:
        if once:
            on_pass(reconciler.reconcile(environment, model))
        elif console.is_terminal and not as_json:
            from controller.commands.status import RolloutLive

            def row() -> dict[str, Any]:
                return dict(_status_row(reconciler, environment, model, time.time()))

            with RolloutLive(console, row, print_changed) as live:

                def on_live_pass(report: PassReport) -> None:
                    reports.append(report)
                    live.on_pass(report)

                reconciler.run(
                    environment,
                    model,
                    poll_seconds=settings.rollout_poll_interval_seconds,
                    on_pass=on_live_pass,
                    sleep=live.sleep,
                )
        else:
            reconciler.run(
                environment,
                model,
                poll_seconds=settings.rollout_poll_interval_seconds,
                on_pass=on_pass,
            )
    finally:
        if reconciler.lease is not None:
            reconciler.lease.release_all()
    last = reports[-1]
    if as_json:
        console.print_json(json.dumps({"passes": [r.as_dict() for r in reports]}))
    return exit_code(last)


def run_rollback(
    settings: Settings,
    *,
    model: str,
    environment: str,
    reason: str,
    target: TargetKind,
    remote: str | None,
    wait: bool,
    console: Console,
    forge: Forge = NO_FORGE,
) -> int:
    """Start a rollback by hand (the same commit a failed gate makes), then see it through.

    It first takes the release's lease, as a controller does: a controller walking the
    rollout hands it over at its next renewal, and then follows (see :mod:`controller.lease`),
    so the rollback is decided on what that controller last did and never commits beside it.
    """
    if not reason.strip():
        raise InputError("--reason must say why (it goes into the commit and the quarantine tag)")
    reconciler = build_reconciler(settings, target=target, remote=remote, forge=forge)
    try:
        if reconciler.lease is not None:
            reconciler.lease.holder = f"sluice-rollback:{reconciler.lease.holder}"
            _take_lease(reconciler.lease, lease_name(environment, model), console)
        _roll_back(reconciler, model, environment, reason, console)
        if not wait:
            return 0
        last = reconciler.run(
            environment,
            model,
            poll_seconds=settings.rollout_poll_interval_seconds,
            on_pass=lambda report: _print_pass(report, console),
        )
    finally:
        if reconciler.lease is not None:
            reconciler.lease.release_all()
    return 0 if last.outcome is Outcome.ROLLED_BACK else exit_code(last)


def _take_lease(keeper: LeaseKeeper, name: str, console: Console) -> None:
    """Hold ``name``, waiting for its holder to hand it over or let it expire (at most one
    lease duration, and a little for the polling)."""
    announced: set[str] = set()

    def waiting(held: Lease) -> None:
        if held.holder in announced:
            return
        announced.add(held.holder)
        left = max(0, math.ceil(held.expires_at - time.time()))
        console.print(
            f"waiting for {held.holder}'s lease on {name} (expires in {left} s; asked it to "
            "hand the lease over at its next renewal)"
        )

    keeper.acquire(
        name, wait_seconds=keeper.duration_seconds + _LEASE_WAIT_SLACK_SECONDS, on_wait=waiting
    )
    if announced:
        console.print(f"took the lease on {name}: no other controller acts on it now")


def _roll_back(
    reconciler: Reconciler, model: str, environment: str, reason: str, console: Console
) -> None:
    """Commit the rollback ``manual_rollback`` decides on the release as it is now."""
    obs = reconciler.observe(environment, model)
    previous_champion = None
    if obs.pin.version is not None:
        tags = reconciler.registry.resolve(model, version=obs.pin.version).tags
        previous_champion = _int_or_none(tags.get("sluice.previous_champion"))
    action = manual_rollback(obs, " ".join(reason.split()), previous_champion)
    if isinstance(action, Wait):
        return
    from controller.rollout.act import Actuator

    ref = load_release(reconciler.workspace, environment, model)
    actuator = Actuator(
        ref,
        reconciler.workspace,
        reconciler.registry,
        reconciler.notifier,
        reconciler.metrics,
        reconciler.forge,
    )
    now = time.time()
    if isinstance(action, RestorePrevious):
        # Undoing a promotion: a person judged the version, so it is quarantined first
        # (a crash after this line leaves it quarantined and the pin unchanged: rerun).
        actuator.act(Quarantine(action.version, action.reason), obs, now)
    done = actuator.act(action, obs, now)
    what = "rollback" if isinstance(action, StartRollback) else f"restore of v{action.previous}"
    if done.commit is None:
        console.print(f"{what} of {model} v{obs.pin.version}: done already, nothing committed")
    else:
        console.print(f"{what} of {model} v{obs.pin.version} committed: {done.commit}")


def run_status(
    settings: Settings,
    *,
    environment: str | None,
    target: TargetKind,
    remote: str | None,
    as_json: bool,
    console: Console,
    watch: bool = False,
    interval_seconds: float = 2.0,
) -> None:
    """Per model and environment: what serves, the canary (or its smoke test), the phase, the
    controller that holds the release's lease, the last gates, the time in phase and the next
    analysis; with ``watch``, again every ``interval_seconds`` until interrupted."""
    reconciler = build_reconciler(settings, target=target, remote=remote)
    if watch:
        from controller.commands.status import watch_status

        watch_status(
            lambda: status_rows(reconciler, environment, target=target),
            console=console,
            interval_seconds=interval_seconds,
        )
        return
    rows = status_rows(reconciler, environment, target=target)
    if as_json:
        console.print_json(json.dumps({"releases": rows}))
        return
    console.print(status_table(rows, width=console.width, now=time.time()))
    for row in rows:
        for note in status_notes(row):
            line = f"{row['model']} in {row['environment']}: {note}"
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    for row in rows:
        release = f"{row['model']} in {row['environment']}"
        retraining = row.get("retraining")
        if isinstance(retraining, dict):
            line = f"{release}: last retraining {retraining['summary']}"
            console.print(line, soft_wrap=True, markup=False)
        drift = row.get("drift")
        if isinstance(drift, dict) and drift.get("on") is not True:
            console.print(f"{release}: drift {drift['summary']}", soft_wrap=True, markup=False)


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
            row = _status_row(reconciler, name, model, now)
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


def _status_row(
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
    action = decide(obs, ref.environment.rollout, now)
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
        due = now + ref.environment.rollout.interval_seconds
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
