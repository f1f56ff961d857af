"""``sluice evidence show`` and ``check``, and the pipeline lines of ``sluice status``.

``show`` lists every piece of evidence recorded on a version, each checked against the
controller keys of the environment it names (every environment's ``evidence.controllerKeys``
on the default branch) and the version's bytes as served now. ``check`` holds the version to
an environment's ``promotion:`` as a proposal would be held (the approval, which the pull
request earns, aside unless ``--with-approval``): exit 0 when it may be proposed, 1 with one
line per thing missing, 2 on bad input. Both, and the pipeline, read through the evidence gate
(:func:`~controller.proposals.evidence_gate.check_promotion`), the one a proposal passes, so
what they print is what ``sluice propose`` and ``sluice serve`` decide; :func:`evidence_sources`
is the one place the real backends are named, so the tests hand in the in-memory ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from controller.errors import ConfigError, GateFailed, SluiceError
from controller.evidence.evaluate import EvidenceVerdict, UpstreamState
from controller.evidence.summary import piece
from controller.evidence.verify import EvidenceCheck
from controller.manifests.environment import EnvironmentConfig
from controller.ports import (
    AttestationStore,
    EvidenceStore,
    ModelRegistry,
    ReleaseRepository,
)
from controller.proposals.evidence_gate import (
    PinState,
    PromotionCheck,
    check_promotion,
    pinned,
    read_environments,
    version_evidence,
)
from controller.rollout.reconcile import Reconciler
from controller.settings import Settings
from controller.soak.watch import soak_started_at
from controller.status.pipeline_view import Pin, pipeline_entry, pipeline_line, pipeline_lines

__all__ = [
    "EvidenceSources",
    "environment_config",
    "evidence_sources",
    "piece_line",
    "pipeline_entries",
    "pipeline_of",
    "print_pipeline",
    "resolve_version",
    "run_evidence_check",
    "run_evidence_show",
]


@dataclass(frozen=True)
class EvidenceSources:
    """The ports a verdict is read through."""

    workspace: ReleaseRepository
    registry: ModelRegistry
    attestations: AttestationStore
    evidence: EvidenceStore


def _check(
    sources: EvidenceSources,
    model: str,
    version: int,
    environment: str,
    configs: Sequence[EnvironmentConfig],
    *,
    with_approval: bool = False,
) -> PromotionCheck | None:
    return check_promotion(
        workspace=sources.workspace, registry=sources.registry, evidence=sources.evidence,
        attestations=sources.attestations, model=model, version=version,
        environment=environment, before_pull_request=not with_approval, environments=configs,
    )  # fmt: skip


def evidence_sources(settings: Settings, remote: str | None) -> EvidenceSources:
    """The GitOps remote's clone and the MLflow registry's versions, attestations and evidence."""
    from controller.backends.mlflow_attestations import MlflowAttestations
    from controller.backends.mlflow_evidence import MlflowEvidence
    from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
    from controller.commands.propose import gitops_workspace

    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    uri = settings.mlflow_tracking_uri
    return EvidenceSources(
        workspace=gitops_workspace(settings, remote),
        registry=MlflowRegistry(uri),
        attestations=MlflowAttestations(uri),
        evidence=MlflowEvidence(uri),
    )


def _say(console: Console, text: str) -> None:
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def resolve_version(
    sources: EvidenceSources, model: str, version: int | None, alias: str | None
) -> int:
    """The version asked for, by number or by alias (the registry's error when unknown)."""
    found = sources.registry.resolve(model, version=version, alias=alias)
    return found.version


def piece_line(check: EvidenceCheck) -> str:
    """``✓ canary in staging at …, key 0123456789ab…: steps 10%→50%→100%, …``."""
    data = piece(check)
    what = f"{check.kind} in {check.environment}"
    if not check.verified:
        return f"✗ {what}: {check.failed} check failed: {check.reason}"
    at = f" at {data['at']}" if data["at"] else ""
    key = f", key {check.keyid[:12]}…" if check.keyid else ""
    numbers = f": {data['headline']}" if data["headline"] else ""
    return f"✓ {what}{at}{key}{numbers}"


def run_evidence_show(
    sources: EvidenceSources, model: str, version: int, *, as_json: bool, console: Console
) -> list[EvidenceCheck]:
    """Print every piece of the version's evidence, checked."""
    sources.workspace.sync()
    checks = version_evidence(
        sources.workspace, sources.evidence, sources.attestations, model=model, version=version
    )
    if as_json:
        document = {"model": model, "version": version, "evidence": [piece(c) for c in checks]}
        console.print_json(json.dumps(document))
        return checks
    failed = sum(1 for check in checks if not check.verified)
    if not checks:
        _say(console, f"{model} v{version}: no evidence recorded")
    else:
        count = f"{len(checks)} piece{'s' if len(checks) != 1 else ''} of evidence"
        _say(console, f"{model} v{version}: {count}" + (f", {failed} failed" if failed else ""))
    for check in checks:
        _say(console, piece_line(check))
    return checks


def environment_config(configs: Sequence[EnvironmentConfig], name: str) -> EnvironmentConfig:
    """The environment ``name`` among ``configs``; a :class:`ConfigError` naming the known ones
    when Git declares no such environment."""
    for config in configs:
        if config.name == name:
            return config
    known = ", ".join(config.name for config in configs) or "none"
    raise ConfigError(
        f"unknown environment {name!r}: manifests/overlays/{name}/sluice.yaml is not on the "
        f"default branch (known: {known})"
    )


def run_evidence_check(
    sources: EvidenceSources,
    model: str,
    *,
    version: int | None,
    alias: str | None,
    environment: str,
    as_json: bool,
    console: Console,
    with_approval: bool = False,
) -> int:
    """Print the verdict of the version against ``environment``'s ``promotion:``; returns the
    version checked, or raises :class:`GateFailed` (exit 1) when something is missing."""
    sources.workspace.sync()
    number = resolve_version(sources, model, version, alias)
    configs = read_environments(sources.workspace)
    environment_config(configs, environment)
    document: dict[str, Any] = {"model": model, "version": number, "environment": environment}
    found = _check(sources, model, number, environment, configs, with_approval=with_approval)
    if found is None:
        document |= {"policy": False, "allowed": True, "complete": True, "missing": [], "met": []}
        if as_json:
            console.print_json(json.dumps(document))
        else:
            _say(
                console,
                f"{model} v{number}: {environment} has no promotion: policy, so any version "
                "may be proposed there",
            )
        return number
    verdict = found.verdict
    document |= {
        "policy": True,
        "allowed": verdict.allowed,
        "complete": verdict.complete,
        "missing": verdict.lines(),
        "met": list(verdict.met),
        "override": verdict.override.line() if verdict.override else None,
    }
    if as_json:
        console.print_json(json.dumps(document))
    else:
        _print_verdict(console, model, number, environment, document)
    if not verdict.allowed:
        count = len(verdict.missing)
        raise GateFailed(
            f"{model} v{number} lacks {count} piece{'s' if count != 1 else ''} of evidence "
            f"{environment} requires (see the lines above); nothing to propose yet"
        )
    return number


def _print_verdict(
    console: Console, model: str, number: int, environment: str, document: dict[str, Any]
) -> None:
    if document["complete"]:
        _say(console, f"{model} v{number} may be proposed to {environment}: evidence complete")
    elif document["allowed"]:
        _say(
            console,
            f"{model} v{number} may be proposed to {environment}: evidence incomplete, "
            f"overridden ({document['override']})",
        )
    else:
        _say(console, f"{model} v{number} may not be proposed to {environment} yet:")
    for line in document["met"]:
        _say(console, f"✓ {line}")
    for line in document["missing"]:
        _say(console, f"✗ {line}")


# -- the pipeline in sluice status -------------------------------------------------------------


def _pin(
    workspace: ReleaseRepository,
    config: EnvironmentConfig,
    model: str,
    found: PinState | None,
    *,
    upstream: bool = True,
) -> Pin:
    """``found`` as the pipeline draws it; upstream, with when its version was promoted to
    100 % there (its soak began), if it was."""
    if found is None:
        return Pin(config.name, None)
    release = found.release
    promoted_at = None
    if upstream and found.serves_alone and release.version is not None:
        pin_path = f"manifests/overlays/{config.name}/{config.release(model).pin}"
        promoted_at = soak_started_at(workspace, config.branch, pin_path, release.version)
    return Pin(config.name, release.version, release.canary_percent, promoted_at)


def _entry(
    sources: EvidenceSources,
    config: EnvironmentConfig,
    model: str,
    configs: Sequence[EnvironmentConfig],
    now: float,
) -> dict[str, Any]:
    policy = config.promotion
    assert policy is not None
    by_name = {c.name: c for c in configs}
    workspace = sources.workspace
    upstream = [
        _pin(workspace, by_name[name], model, pinned(workspace, by_name[name], model))
        if name in by_name
        else Pin(name, None)
        for name in policy.upstream
    ]
    version = upstream[0].version
    checks: Sequence[EvidenceCheck] = ()
    states: Sequence[UpstreamState] = ()
    verdict: EvidenceVerdict | None = None
    if version is not None:
        found = _check(sources, model, version, config.name, configs)
        assert found is not None  # the environment has a promotion: block
        checks, states, verdict = found.checks, found.upstream, found.verdict
    return pipeline_entry(
        environment=config.name,
        model=model,
        policy=policy,
        upstream=upstream,
        states=states,
        serving=_pin(workspace, config, model, pinned(workspace, config, model), upstream=False),
        verdict=verdict,
        checks=checks,
        now=now,
    )


def pipeline_entries(
    sources: EvidenceSources, environment: str | None, *, now: float | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each model's path into every environment with a ``promotion:`` block (those that
    involve ``environment`` when one is given), and a note per model whose evidence could not
    be read; ``now`` (default: the clock) says how long a soak not yet decided has run."""
    now = time.time() if now is None else now
    configs = read_environments(sources.workspace)
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    for config in configs:
        policy = config.promotion
        if policy is None:
            continue
        if environment is not None and environment not in (config.name, *policy.upstream):
            continue
        for release in config.releases:
            try:
                entry = _entry(sources, config, release.model, configs, now)
            except SluiceError as exc:
                notes.append(f"{release.model} into {config.name}: {exc.message}")
                continue
            entry["line"] = pipeline_line(entry)
            entries.append(entry)
    return entries, notes


def pipeline_of(
    settings: Settings, reconciler: Reconciler, environment: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`pipeline_entries` read through the reconciler's Git and registry and MLflow's
    attestations and evidence (``sluice status`` and its page); what cannot be read at all
    is one note."""
    from controller.backends.mlflow_attestations import MlflowAttestations
    from controller.backends.mlflow_evidence import MlflowEvidence

    sources = EvidenceSources(
        workspace=reconciler.workspace,
        registry=reconciler.registry,
        attestations=MlflowAttestations(settings.mlflow_tracking_uri),
        evidence=MlflowEvidence(settings.mlflow_tracking_uri),
    )
    try:
        return pipeline_entries(sources, environment)
    except SluiceError as exc:
        return [], [exc.message]


def print_pipeline(
    console: Console, entries: Sequence[dict[str, Any]], notes: Sequence[str]
) -> None:
    """One line per model's path, then each piece of the version's evidence under it
    (:func:`~controller.status.pipeline_view.pipeline_lines`, what ``--watch`` draws too)."""
    for line in pipeline_lines(entries, notes):
        _say(console, line)
