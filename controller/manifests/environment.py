"""An environment's Sluice configuration, kept in Git next to its manifests.

``manifests/overlays/ENV/sluice.yaml`` says which models the environment serves, which file
pins each one, how registry locations map to storage KServe can read, and how rollouts step
(``rollout:`` for the models, ``graphRollout:`` for changes of its InferenceGraphs). A release
may override part of ``rollout:`` for itself (``releases[].rollout``, deep-merged over it):
the members of one graph are different models, judged differently. Whatever reads a release's
policy reads :meth:`EnvironmentConfig.policy_for`.
It lives in Git for the same reason the manifests do: a change to how an environment is
deployed is reviewed like any other change. ``sluice config schema environment`` prints the
schema generated from these models.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from controller.errors import ConfigError
from controller.evidence.policy import EvidenceKeys, PromotionPolicy
from controller.gates.graph_traffic import GraphTraffic
from controller.gates.metrics_profile import RAW_DEPLOYMENT_PROFILE
from controller.limits import ENVIRONMENT_FILE_MAX_BYTES
from controller.manifests.inference_logger import events_url_problem
from controller.rollout.graph_policy import GraphRolloutPolicy
from controller.rollout.policy import RolloutPolicy, merge_policy
from controller.soak.policy import SoakPolicy
from controller.yaml_config import parse_yaml, validate_yaml_model

__all__ = [
    "ENVIRONMENT_FILE",
    "EnvironmentConfig",
    "GraphRolloutPolicy",
    "PromotionPolicy",
    "ProvenancePolicy",
    "ReleaseConfig",
    "RolloutPolicy",
    "StorageConfig",
    "StorageRewrite",
    "load_environment",
    "overlay_dir",
    "parse_environment",
]

ENVIRONMENT_FILE = "sluice.yaml"


class StorageRewrite(BaseModel):
    """Replace a registry location prefix with the storage prefix KServe reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(description="Registry artifact location prefix, e.g. mlflow-artifacts:/")
    replacement: str = Field(description="Storage prefix KServe reads, e.g. s3://bucket/prefix/")


class StorageConfig(BaseModel):
    """Where model artifacts may come from in this environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_schemes: tuple[str, ...] = Field(
        alias="allowedSchemes",
        description="URI schemes KServe may read here (file is for local targets only).",
    )
    rewrites: tuple[StorageRewrite, ...] = Field(default=(), description="First match wins.")


class ProvenancePolicy(BaseModel):
    """Which versions the environment accepts: signed by a trusted key, built by an allowed
    builder, and still the bytes that were signed (:mod:`controller.provenance.verify`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    required: bool = Field(
        default=True,
        description="Verify each version's provenance attestation before it is proposed and "
        "at each rollout step. false: no check (as when provenance is unset).",
    )
    trusted_keys: tuple[str, ...] = Field(
        default=(),
        alias="trustedKeys",
        description="Ed25519 public keys (PEM, `sluice provenance keygen`) whose signature "
        "is accepted: paths from the GitOps repository's root, read from its default branch "
        "(a key on a proposal branch trusts nothing).",
    )
    builders: tuple[str, ...] = Field(
        default=(),
        description="Builder ids accepted (the CI workflow run's URL), exact or fnmatch "
        "patterns such as https://github.com/ORG/REPO/actions/runs/*. Empty: any builder.",
    )
    mode: Literal["enforce", "warn"] = Field(
        default="enforce",
        description="enforce: a version that fails verification is refused (exit 1, nothing "
        "written) and rolled back if it fails during a rollout. warn: it is proposed with the "
        "failure in the output and the pull request (a staging environment's choice).",
    )

    @field_validator("trusted_keys")
    @classmethod
    def _keys_are_in_the_repository(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(
                    f"trustedKeys entry {path!r} must be a path inside the GitOps repository, "
                    "from its root (e.g. keys/production.pub)"
                )
        return value

    @model_validator(mode="after")
    def _required_names_a_key(self) -> ProvenancePolicy:
        if self.required and not self.trusted_keys:
            raise ValueError(
                "provenance.required needs at least one trustedKeys entry (a public key "
                "committed to the repository; `sluice provenance keygen` writes one)"
            )
        return self


class ReleaseConfig(BaseModel):
    """One model served in this environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str = Field(description="Registered model name.")
    inference_service: str = Field(alias="inferenceService", description="InferenceService name.")
    pin: str = Field(description="File in the overlay that pins the version; Sluice edits it.")
    alias: str = Field(default="challenger", description="Registry alias proposals follow.")
    champion_alias: str = Field(
        default="champion",
        alias="championAlias",
        description="Registry alias a completed rollout moves to the version it promoted.",
    )
    graph_traffic: GraphTraffic | None = Field(
        default=None,
        alias="graphTraffic",
        description="For a member of an InferenceGraph: judge its canary on the requests the "
        "graph routed to it. The builtin metric checks and the judge then read the graph's "
        "step series (sluice_graph_step_*) of this graph (and node and step, when given) "
        "whose service_name is this release's InferenceService, canary revision against "
        "primary; unset: the InferenceService's own revision series, all its requests. With "
        "replay, a replay of the regime's requests through the tag routes instead.",
    )
    rollout: RolloutPolicy | None = Field(
        default=None,
        description="This release's own rollout policy, for a model the environment's does "
        "not fit (a graph's classifier judged per class beside binary specialists, a rarely "
        "called member needing other steps): only the fields it changes, deep-merged over "
        "the environment's rollout (mappings merge key by key; lists and values replace; "
        "shadow: null removes the environment's shadow phase), and the result validated as "
        "a whole policy. gates.metricsProfile stays the environment's. Unset: the "
        "environment's rollout.",
    )

    @field_validator("pin")
    @classmethod
    def _pin_is_relative(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("pin must be a file inside the overlay directory")
        return value


class EnvironmentConfig(BaseModel):
    """``manifests/overlays/ENV/sluice.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["sluice.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Environment"]
    name: str
    branch: str = Field(default="main", description="Branch Argo CD syncs this environment from.")
    deployment_mode: Literal["Serverless", "RawDeployment"] = Field(
        default="Serverless", alias="deploymentMode"
    )
    storage: StorageConfig
    releases: tuple[ReleaseConfig, ...]
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    events_url: str | None = Field(
        default=None,
        alias="eventsUrl",
        description="URL at which this environment's InferenceServices reach `sluice serve`'s "
        "POST /v1/events, e.g. http://sluice-controller.sluice-system.svc:8686/v1/events. "
        "`sluice propose` writes it as the predictor's KServe inference logger "
        "(spec.predictor.logger: mode all, metadataHeaders Knative-Serving-Revision) into the "
        "pins of releases whose policy judges answers (a shadow phase, gates.kpis), so the "
        "cluster's "
        "requests and answers reach the prediction log. No credential in it (Git keeps it): "
        "guard the route with a NetworkPolicy and SLUICE_EVENTS_TRUST_NETWORK. Unset: no "
        "logger is written.",
    )
    provenance: ProvenancePolicy | None = Field(
        default=None,
        description="Require a valid, signed provenance attestation of each version proposed "
        "here (see the README's Provenance and audits). Unset: no check.",
    )
    promotion: PromotionPolicy | None = Field(
        default=None,
        description="What a version must have earned upstream before it is proposed here: "
        "signed evidence from the environment(s) it comes from (see the README's Promotion "
        "by evidence). Not yet enforced by propose or the rollout. Unset: any version.",
    )
    evidence: EvidenceKeys | None = Field(
        default=None,
        description="Whose signature makes this environment's evidence count (the public "
        "keys of its controller): an environment downstream whose promotion names this one "
        "in from trusts only these. Unset: nothing recorded here counts as evidence.",
    )
    soak: SoakPolicy | None = Field(
        default=None,
        description="What breaks the soak of a version serving 100 % here, when an "
        "environment downstream requires one (its promotion.require.soak, which sets the "
        "duration): drift alerts, Prometheus checks and KPIs (see the README's Promotion by "
        "evidence). Unset: a drift alert alone breaks it.",
    )
    graph_rollout: GraphRolloutPolicy = Field(
        default_factory=GraphRolloutPolicy,
        alias="graphRollout",
        description="How `sluice graph rollout` walks a merged change of one of the "
        "environment's InferenceGraphs (its canary form): the canary graph's weights, the "
        "interval between analyses, the checks comparing its branch with the stable graph's "
        "on the graph router's branch series (by default rollout.gates.metrics' builtin "
        "checks) and the limits; a failed check, or a hold past a limit, rolls the graph back "
        "by a commit.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _releases_merge_their_policies(
        cls, data: Any, handler: ModelWrapValidatorHandler[EnvironmentConfig]
    ) -> EnvironmentConfig:
        """Each ``releases[N].rollout`` as written is merged over ``rollout`` as written
        (after the RawDeployment default below) and validated whole: the release then holds
        its merged policy. The rest is validated first, so the environment's own mistakes are
        named where they are."""
        data = _raw_deployments_read_the_wrapper(data)
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, list):
            return handler(data)
        overrides = {
            index: release["rollout"]
            for index, release in enumerate(releases)
            if isinstance(release, dict) and release.get("rollout") is not None
        }
        if not overrides:
            return handler(data)
        config = handler(
            {
                **data,
                "releases": [
                    {k: v for k, v in r.items() if k != "rollout"} if i in overrides else r
                    for i, r in enumerate(releases)
                ],
            }
        )
        base = data.get("rollout") or {}
        merged = list(config.releases)
        for index, override in overrides.items():
            policy = _release_policy(index, base, override)
            merged[index] = merged[index].model_copy(update={"rollout": policy})
        return config.model_copy(update={"releases": tuple(merged)})

    @field_validator("events_url")
    @classmethod
    def _events_url_is_bare(cls, value: str | None) -> str | None:
        problem = None if value is None else events_url_problem(value)
        if problem is not None:
            raise ValueError(f"eventsUrl {problem}")
        return value

    @model_validator(mode="after")
    def _promotion_comes_from_elsewhere(self) -> EnvironmentConfig:
        if self.promotion is not None and self.name in self.promotion.upstream:
            raise ValueError(
                f"promotion.from names {self.name!r}, this environment itself; name the "
                "environment(s) versions come from, e.g. [staging]"
            )
        return self

    @model_validator(mode="after")
    def _soak_kpis_are_declared(self) -> EnvironmentConfig:
        if self.soak is None or not self.soak.kpis:
            return self
        policies = [self.rollout] + [r.rollout for r in self.releases if r.rollout is not None]
        declared = {kpi.name for policy in policies for kpi in policy.gates.kpis}
        for kpi in self.soak.kpis:
            if kpi.name not in declared:
                raise ValueError(
                    f"soak.kpis names {kpi.name!r}, which no rollout.gates.kpis check here "
                    f"declares (declared: {', '.join(sorted(declared)) or 'none'}); its "
                    "series sluice_kpi comes from that check"
                )
        return self

    def release(self, model: str) -> ReleaseConfig:
        """The release of ``model``; :class:`ConfigError` naming the known ones otherwise."""
        for release in self.releases:
            if release.model == model:
                return release
        known = ", ".join(r.model for r in self.releases) or "none"
        raise ConfigError(
            f"environment {self.name!r} does not serve model {model!r} (it serves: {known}); "
            f"add it to releases in its {ENVIRONMENT_FILE}"
        )

    @property
    def provenance_check(self) -> ProvenancePolicy | None:
        """The provenance policy when it requires a check, else None."""
        policy = self.provenance
        return policy if policy is not None and policy.required else None

    def policy_for(self, model: str) -> RolloutPolicy:
        """The rollout policy of ``model``'s release: its ``rollout`` merged over the
        environment's when it has one, else the environment's (:class:`ConfigError` for a
        model not served here)."""
        release = self.release(model)
        return release.rollout if release.rollout is not None else self.rollout


def _raw_deployments_read_the_wrapper(data: Any) -> Any:
    """RawDeployment has no queue-proxy: unless the policy names a metrics profile, the gates
    read the serving wrapper's request metrics."""
    if not isinstance(data, dict):
        return data
    mode = data.get("deploymentMode", data.get("deployment_mode"))
    rollout = data.get("rollout", {})
    gates = rollout.get("gates", {}) if isinstance(rollout, dict) else None
    if mode != "RawDeployment" or not isinstance(gates, dict):
        return data
    if gates.get("metricsProfile", gates.get("metrics_profile")) is not None:
        return data
    gates = {**gates, "metricsProfile": RAW_DEPLOYMENT_PROFILE}
    return {**data, "rollout": {**rollout, "gates": gates}}


def _release_policy(index: int, base: Any, override: Any) -> RolloutPolicy:
    """Release ``index``'s ``override`` merged over the environment's ``base``; a problem is
    a validation error at ``releases[N].rollout.<field>`` (base was validated already)."""
    where = (f"releases[{index}]", "rollout")
    if not isinstance(override, dict):
        raise _error(
            where, "Input should be a mapping: the rollout fields this release changes", override
        )
    gates = override.get("gates")
    if isinstance(gates, dict) and {"metricsProfile", "metrics_profile"} & gates.keys():
        raise _error(
            (*where, "gates", "metricsProfile"),
            "the metrics profile is the environment's (its cluster's series, read for all its "
            "releases and graphs); set it in rollout.gates.metricsProfile",
            gates.get("metricsProfile", gates.get("metrics_profile")),
        )
    if isinstance(base, RolloutPolicy):  # built in code rather than read from a file
        base = base.model_dump(by_alias=True, exclude_unset=True)
    try:
        return merge_policy(base if isinstance(base, dict) else {}, override)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _error((*where, *first["loc"]), first["msg"], first["input"]) from None


def _error(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc``, worded as ``message`` (no template: taken as is)."""
    detail: InitErrorDetails = {
        "type": PydanticCustomError("release_rollout", message),
        "loc": loc,
        "input": value,
    }
    return ValidationError.from_exception_data("EnvironmentConfig", [detail])


def overlay_dir(repo_root: Path, environment: str) -> Path:
    """The overlay directory of an environment."""
    return repo_root / "manifests" / "overlays" / environment


def load_environment(repo_root: Path, environment: str) -> EnvironmentConfig:
    """Read and validate an environment's configuration from a checkout."""
    path = overlay_dir(repo_root, environment) / ENVIRONMENT_FILE
    if not path.is_file():
        overlays = overlay_dir(repo_root, environment).parent
        known = (
            sorted(p.name for p in overlays.iterdir() if (p / ENVIRONMENT_FILE).is_file())
            if overlays.is_dir()
            else []
        )
        raise ConfigError(
            f"unknown environment {environment!r}: {path} does not exist "
            f"(known: {', '.join(known) or 'none'})"
        )
    return parse_environment(
        path.read_text(encoding="utf-8"), source=str(path), environment=environment
    )


def parse_environment(text: str, *, source: str, environment: str) -> EnvironmentConfig:
    """Validate an environment file's text (read from a checkout or a Git revision).

    Remembered by text (the config is frozen): an environment of a hundred releases takes
    ~0.1 s to parse, and every proposal and every ``sluice serve`` pass reads the same file."""
    return _parse_environment(text, source, environment)


@functools.lru_cache(maxsize=256)
def _parse_environment(text: str, source: str, environment: str) -> EnvironmentConfig:
    data = parse_yaml(text, label=source, limit=ENVIRONMENT_FILE_MAX_BYTES, kind="environment file")
    config = validate_yaml_model(EnvironmentConfig, data, label=source)
    if config.name != environment:
        raise ConfigError(f"{source}: name is {config.name!r} but the overlay is {environment!r}")
    if config.deployment_mode == "RawDeployment":
        _refuse_shadow(config, source)
    for release in config.releases:
        _check_replay(release, config.policy_for(release.model), source)
    return config


def _refuse_shadow(config: EnvironmentConfig, source: str) -> None:
    """The mirror needs a revision at weight 0 beside the primary: Serverless revisions. The
    environment's policy is checked first (a release that inherits its shadow phase is refused
    there), then each release's own."""
    policies = [("rollout", config.rollout)] + [
        (f"releases[{index}].rollout", release.rollout)
        for index, release in enumerate(config.releases)
        if release.rollout is not None
    ]
    for field, policy in policies:
        if policy.shadow is not None:
            raise ConfigError(
                f"{source}: {field}.shadow needs deploymentMode Serverless (a RawDeployment "
                f"canary has no revision at weight 0 to mirror to); remove {field}.shadow or "
                "use Serverless"
            )


def _check_replay(release: ReleaseConfig, policy: RolloutPolicy, source: str) -> None:
    """A replay the load test's thresholds let pass: paced no slower than ``minRps``, and
    sending at least ``minRequests`` a look when paced."""
    replay = release.graph_traffic.replay if release.graph_traffic is not None else None
    if replay is None:
        return
    load = policy.gates.load_test
    rps = replay.rps if replay.rps is not None else load.rps
    seconds = math.ceil(replay.duration_seconds or load.duration_seconds)
    where = f"{source}: release {release.model}: graphTraffic.replay"
    if rps is not None and load.min_rps is not None and load.min_rps > rps:
        raise ConfigError(
            f"{where} is paced at {rps:g} rps, below gates.loadTest.minRps {load.min_rps:g}: "
            "it could never pass; raise replay.rps or lower minRps"
        )
    if rps is not None and rps * seconds < load.min_requests:
        raise ConfigError(
            f"{where} sends at most {rps * seconds:g} requests a look ({rps:g} rps for "
            f"{seconds} s), fewer than gates.loadTest.minRequests {load.min_requests}: it could "
            "never pass; raise replay.rps or replay.duration"
        )
