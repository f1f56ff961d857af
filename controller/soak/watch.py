"""The soak watcher of ``sluice serve``: one pass over the releases of the upstream environments.

An environment is *upstream* when another environment's ``promotion.from`` names it with a
``require.soak``; the longest such duration is the soak it runs
(:func:`~controller.soak.policy.required_soak_seconds`). For each of its releases a pass reads,
keeping nothing in the process (a restart re-derives all of it):

- from Git, the pin on the environment's branch: the version it names at 100 % (a pin with a
  canary weight is mid-rollout: nothing soaks), and the newest commit on the pin whose
  trailers say ``Sluice-Action: promote`` for that version, whose time starts the soak. A
  version the pin no longer names (superseded, rolled back) is not looked at again;
- from the registry, the version's quarantine tag (a quarantined version does not soak), its
  ``sluice.evidence.ENV.soak`` tag (there: the soak was decided, nothing more to do, so
  recording happens once) and the release's retraining records
  (``sluice.retrain.ENV.last`` and ``.turned_away``, written when a drift alert reaches
  ``/hooks/alertmanager``), whose alerts break the soak when ``soak.driftAlerts`` is on;
- from Prometheus, the ``soak:`` checks of the revision that serves (the target names it).

then :func:`~controller.soak.decide.decide` and, on :class:`~controller.soak.decide.Broken` or
:class:`~controller.soak.decide.Complete`, records the signed ``soak`` evidence
(:func:`~controller.evidence.record.record_evidence`). Errors are per release: one release's
failure is logged in one redacted line and the others are still looked at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from controller.domain import QUARANTINE_TAG
from controller.errors import ModelNotFound, SluiceError
from controller.evidence.record import record_evidence
from controller.evidence.statement import evidence_tag
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.manifest import load_pin, read_release
from controller.ports import (
    AttestationStore,
    EvidenceStore,
    MetricsSource,
    ModelRegistry,
    ModelTagStore,
    ReleaseRepository,
    Target,
)
from controller.redact import redact
from controller.retrain.record import RetrainRecord, last_retrain_tag, parse_time, turned_away_tag
from controller.soak.checks import SoakScope, read_checks
from controller.soak.decide import (
    Broken,
    Complete,
    Reading,
    SeenAlert,
    SoakFacts,
    check_window_seconds,
    decide,
    evidence_body,
)
from controller.soak.policy import SoakPolicy, required_soak_seconds
from controller.target_types import TargetObservation

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from controller.manifests.environment import ReleaseConfig

__all__ = [
    "SoakRegistry",
    "SoakReport",
    "SoakWatcher",
    "serving_revision",
    "soak_started_at",
]

log = logging.getLogger("sluice.soak")

_OVERLAYS = "manifests/overlays"


class SoakRegistry(ModelRegistry, ModelTagStore, Protocol):
    """What the watcher reads in the registry: versions' tags and the model's tags."""


@dataclass(frozen=True)
class SoakReport:
    """What a pass says of one release: the version and one line (``soak 6h/24h``,
    ``soak complete: 24h, clean; recorded sha256:…``, ``not soaking: …``)."""

    environment: str
    model: str
    version: int | None
    line: str


def soak_started_at(
    workspace: ReleaseRepository, branch: str, pin_path: str, version: int
) -> float | None:
    """The time of the newest commit on ``pin_path`` that promoted ``version`` to 100 %
    (trailers ``Sluice-Action: promote``, ``Sluice-Version: N``); None when none of the last
    commits on the pin did."""
    for change in workspace.changes(branch, pin_path):
        trailers = change.trailers
        if trailers.get("Sluice-Action") == "promote" and trailers.get("Sluice-Version") == str(
            version
        ):
            return change.time
    return None


def serving_revision(observed: TargetObservation) -> str | None:
    """The revision taking all of the InferenceService's traffic, if one does."""
    whole = [entry.revision for entry in observed.traffic if entry.percent == 100]
    if whole:
        return whole[0]
    return observed.latest_rolledout if not observed.traffic else None


def seen_alerts(tags: dict[str, str], environment: str, version: int) -> list[SeenAlert]:
    """The drift alerts the release's retraining records hold (the last retraining and the
    last alert its cool-down turned away), each at when it fired; records that name another
    drifted version are not this version's."""
    seen = []
    for tag in (last_retrain_tag(environment), turned_away_tag(environment)):
        record = RetrainRecord.decode(tags.get(tag))
        if record is None or record.drifted_version not in ("", str(version)):
            continue
        at = parse_time(record.since) if record.since else None
        at = at if at is not None else parse_time(record.at)
        if at is None:
            continue
        seen += [SeenAlert(name, at) for name in record.alerts or ("a drift alert",)]
    return seen


class SoakWatcher:
    """Soaks the versions serving 100 % in the upstream environments, and signs the outcome.

    ``clock`` is wall-clock epoch seconds (commit times are). ``metrics`` and ``target`` may
    be None when no environment has ``soak.checks`` or ``soak.kpis``; a check that cannot be
    read then holds the soak, as no data does. ``environments`` restricts the pass to those
    upstream environments (``sluice serve --env``).
    """

    def __init__(
        self,
        *,
        workspace: ReleaseRepository,
        registry: SoakRegistry,
        evidence: EvidenceStore,
        attestations: AttestationStore,
        signer: CryptoSigner,
        controller: str,
        metrics: MetricsSource | None = None,
        target: Target | None = None,
        clock: Callable[[], float] = time.time,
        environments: Sequence[str] | None = None,
    ) -> None:
        self.workspace = workspace
        self.registry = registry
        self.evidence = evidence
        self.attestations = attestations
        self.signer = signer
        self.controller = controller
        self.metrics = metrics
        self.target = target
        self.clock = clock
        self.environments = tuple(environments) if environments is not None else None

    # -- the pass ------------------------------------------------------------------------------

    def run_once(self) -> list[SoakReport]:
        """Sync Git, then look at every release of every upstream environment once."""
        self.workspace.sync()
        reports: list[SoakReport] = []
        for config, required in self._upstream():
            for release in config.releases:
                try:
                    report = self._release(config, release, required)
                except (SluiceError, ValueError) as exc:
                    line = redact(" ".join(str(exc).split()))
                    log.warning("soak %s in %s: %s", release.model, config.name, line)
                    report = SoakReport(config.name, release.model, None, f"error: {line}")
                reports.append(report)
        return reports

    def run_forever(self, stop: threading.Event, interval_seconds: float) -> None:
        """A pass every ``interval_seconds`` until ``stop`` is set; a pass that fails whole
        (Git unreachable, an environment's sluice.yaml that does not parse, so the required
        duration is unknown, a bug) is logged and the next one tried."""
        while not stop.is_set():
            try:
                for report in self.run_once():
                    log.info("soak %s in %s: %s", report.model, report.environment, report.line)
            except Exception as exc:  # the loop outlives any one pass
                log.error("soak pass failed: %s", redact(" ".join(str(exc).split())))
            stop.wait(interval_seconds)

    # -- internals -----------------------------------------------------------------------------

    def _upstream(self) -> list[tuple[EnvironmentConfig, int]]:
        """The upstream environments (read from the default branch), with their soak."""
        default = self.workspace.default_branch()
        configs = []
        for name in sorted(self.workspace.list_dir(default, _OVERLAYS)):
            path = f"{_OVERLAYS}/{name}/{ENVIRONMENT_FILE}"
            text = self.workspace.read(default, path)
            if text is not None:
                configs.append(
                    parse_environment(text, source=f"{path}@{default}", environment=name)
                )
        promotions = [config.promotion for config in configs]
        wanted = []
        for config in configs:
            required = required_soak_seconds(config.name, promotions)
            if required is not None and (
                self.environments is None or config.name in self.environments
            ):
                wanted.append((config, required))
        return wanted

    def _release(
        self, config: EnvironmentConfig, release: ReleaseConfig, required: int
    ) -> SoakReport:
        found = self._soaking(config, release)
        if isinstance(found, SoakReport):
            return found
        version, started = found
        env, model = config.name, release.model
        policy = config.soak or SoakPolicy()
        now = self.clock()
        final = now - started >= required
        alerts = (
            seen_alerts(self.registry.registered_model_tags(model), env, version)
            if policy.drift_alerts
            else []
        )
        facts = SoakFacts(version=version, started_at=started, now=now, required_seconds=required)
        readings = self._readings(policy, config, release, facts, final=final)
        facts = replace(facts, alerts=alerts, readings=readings, whole_window=final)
        decision = decide(facts)
        if not isinstance(decision, Broken | Complete):
            return SoakReport(env, model, version, decision.line())
        digest = record_evidence(
            self.evidence,
            self.attestations,
            self.signer,
            kind="soak",
            body=evidence_body(decision, facts),
            environment=env,
            model=model,
            version=version,
            controller=self.controller,
            now=now,
        )
        log.info("soak %s v%s in %s: %s; recorded %s", model, version, env, decision.line(), digest)
        return SoakReport(env, model, version, f"{decision.line()}; recorded {digest}")

    def _soaking(
        self, config: EnvironmentConfig, release: ReleaseConfig
    ) -> tuple[int, float] | SoakReport:
        """The version soaking and since when; or why nothing soaks (or the soak was
        decided), as the release's report."""
        env, model = config.name, release.model

        def report(version: int | None, line: str) -> SoakReport:
            return SoakReport(env, model, version, line)

        pin_path = f"{_OVERLAYS}/{env}/{release.pin}"
        text = self.workspace.read(config.branch, pin_path)
        if text is None:
            return report(None, f"not soaking: {pin_path} is not on {config.branch}")
        pin = read_release(load_pin(text, source=f"{pin_path}@{config.branch}"))
        version = pin.version
        if version is None:
            return report(None, "not soaking: the pin names no version")
        if pin.canary_percent is not None:
            return report(version, f"not soaking: canary at {pin.canary_percent}%")
        try:
            tags = self.registry.resolve(model, version=version).tags
        except ModelNotFound:
            return report(version, f"not soaking: v{version} is not registered")
        if tags.get(QUARANTINE_TAG):
            return report(version, f"not soaking: quarantined ({tags[QUARANTINE_TAG]})")
        tag = evidence_tag(env, "soak")
        recorded = self.evidence.evidence_tags(model, version).get(tag)
        if recorded is not None:
            return report(version, f"soak decided: {tag}={recorded}")
        started = soak_started_at(self.workspace, config.branch, pin_path, version)
        if started is None:
            return report(version, f"not soaking: no promote commit of v{version} on the pin")
        return version, started

    def _readings(
        self,
        policy: SoakPolicy,
        config: EnvironmentConfig,
        release: ReleaseConfig,
        facts: SoakFacts,
        *,
        final: bool,
    ) -> list[Reading]:
        if not policy.checks and not (final and policy.kpis):
            return []
        names = [c.name for c in policy.checks]
        names += [f"kpi/{k.name}" for k in policy.kpis] if final else []
        if self.metrics is None or self.target is None:
            why = "no Prometheus" if self.metrics is None else "no target to name the revision"
            return [Reading(name, "", None, "error", f"{name}: {why}") for name in names]
        observed = self.target.observe(config.name, release.inference_service)
        revision = serving_revision(observed)
        if revision is None or not observed.configuration:
            why = f"no revision of {release.inference_service} takes all traffic"
            return [Reading(name, "", None, "inconclusive", f"{name}: {why}") for name in names]
        scope = SoakScope(
            environment=config.name,
            model=release.model,
            namespace=observed.namespace,
            configuration=observed.configuration,
            inference_service=release.inference_service,
            revision=revision,
        )
        return read_checks(
            self.metrics,
            policy,
            scope,
            lambda interval: check_window_seconds(facts, interval),
            final=final,
            profile=config.policy_for(release.model).gates.profile,
        )
