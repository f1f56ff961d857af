"""Typed settings: one place that says what Sluice can be configured with.

Values come, highest precedence first, from command-line flags, the environment
(``MLFLOW_TRACKING_URI``, ``GITHUB_TOKEN`` and ``SLUICE_*``), a YAML config file
(``sluice.yaml`` in the working directory, or the path in ``SLUICE_CONFIG`` / ``--config``) and
the defaults below. ``sluice config schema`` prints the JSON schema generated from this module,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from controller.errors import ConfigError
from controller.limits import SETTINGS_FILE_MAX_BYTES
from controller.yaml_config import load_yaml_file

__all__ = ["DEFAULT_CONFIG_FILE", "Settings", "load_settings"]

DEFAULT_CONFIG_FILE = Path("sluice.yaml")
#: The model's training module, as the default retrain command runs it.
_RETRAIN_MODULE = ("{python}", "-m", "{module}")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class Settings(BaseSettings):
    """Sluice's settings. Environment variables are the field names with the ``SLUICE_`` prefix,
    except where a field lists the variable its ecosystem already uses."""

    model_config = SettingsConfigDict(
        env_prefix="SLUICE_",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    mlflow_tracking_uri: str = Field(
        default="http://127.0.0.1:5000",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow tracking server that holds the model registry (MLFLOW_TRACKING_URI).",
    )
    registry_request_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description=(
            "How often a failed registry request is retried before Sluice reports the registry "
            "unreachable. MLflow's own default (7 retries with backoff) hides an outage for "
            "minutes."
        ),
    )
    registry_request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Timeout of one request to the MLflow tracking server.",
    )
    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLUICE_GITHUB_TOKEN", "GITHUB_TOKEN", "github_token"),
        description=(
            "Token for the GitHub forge (SLUICE_GITHUB_TOKEN, else GITHUB_TOKEN). "
            "Never logged, printed or committed."
        ),
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        validation_alias=AliasChoices("SLUICE_GITHUB_API_URL", "GITHUB_API_URL", "github_api_url"),
        description=(
            "GitHub REST API base URL (SLUICE_GITHUB_API_URL, else GITHUB_API_URL, which "
            "GitHub Actions sets); for GitHub Enterprise https://HOST/api/v3."
        ),
    )
    github_repository: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SLUICE_GITHUB_REPOSITORY", "GITHUB_REPOSITORY", "github_repository"
        ),
        description="owner/name of the repository pull requests are opened against.",
    )
    git_remote: str | None = Field(
        default=None,
        description=(
            "URL or path of the Git remote holding the manifests (default: the `origin` of "
            "the repository in the working directory)."
        ),
    )
    git_author_name: str = Field(default="Sluice", description="Author of Sluice's commits.")
    git_author_email: str = Field(
        default="sluice@users.noreply.github.com", description="Author email of Sluice's commits."
    )
    serve_host: str = Field(default="127.0.0.1", description="Address `sluice serve` binds.")
    serve_port: int = Field(default=8686, ge=0, le=65535, description="Port of `sluice serve`.")
    poll_interval_seconds: float = Field(
        default=60.0,
        ge=1.0,
        description="How often `sluice serve` compares registry aliases with the pins in Git.",
    )
    rollout_poll_interval_seconds: float = Field(
        default=2.0,
        ge=0.1,
        le=600.0,
        description="How often a rollout looks again while it waits for something with no "
        "known end (Argo CD to sync, a revision to become ready); analyses run at the "
        "policy's interval, and after a commit the next pass comes at once "
        "(`sluice rollout --poll-interval`).",
    )
    rollout_lease_seconds: float = Field(
        default=30.0,
        ge=3.0,
        le=3600.0,
        description="How long a controller's lease on a release lasts unrenewed "
        "(refs/sluice/leases/ENV/MODEL in the GitOps remote): only its holder analyses and "
        "acts, renewing it every third of this; another controller takes a rollout over this "
        "long after its holder stopped renewing. Keep it above the longest analysis.",
    )
    rollout_lease_store: Literal["git", "kubernetes"] = Field(
        default="git",
        description="Where the rollout leases are kept: git (a ref refs/sluice/leases/ENV/MODEL "
        "in the GitOps remote) or kubernetes (a coordination.k8s.io/v1 Lease per release in "
        "rollout_lease_namespace, through the pod's service account or the kubeconfig).",
    )
    rollout_lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Kubernetes Leases (rollout_lease_store: kubernetes); "
        "default: the namespace the controller's pod runs in, else sluice.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Shared secret of MLflow registry webhooks (SLUICE_WEBHOOK_SECRET); without it "
            "POST /hooks/mlflow is not served and polling alone finds new versions."
        ),
    )
    webhook_max_age_seconds: float = Field(
        default=300.0, gt=0, le=3600, description="Oldest webhook delivery accepted."
    )
    mlflow_webhook_url: str | None = Field(
        default=None,
        description=(
            "URL at which MLflow reaches `sluice serve` (…/hooks/mlflow); when set, "
            "`sluice serve` creates or updates its webhook in the registry at start."
        ),
    )
    alertmanager_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token Alertmanager sends to POST /hooks/alertmanager "
            "(SLUICE_ALERTMANAGER_TOKEN; its webhook_config's http_config.authorization); "
            "without it the route is not served and drift alerts start no retraining."
        ),
    )
    feedback_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token of POST /v1/feedback, where late ground-truth labels arrive "
            "(SLUICE_FEEDBACK_TOKEN; `sluice feedback --url` sends it); without it the route "
            "is not served. Never logged or printed."
        ),
    )
    events_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token of POST /v1/events, where inference-logger CloudEvents arrive "
            "(SLUICE_EVENTS_TOKEN), for senders that can set a header. KServe's logger cannot: "
            "use events_trust_network for it. Without either the route is not served."
        ),
    )
    events_trust_network: bool = Field(
        default=False,
        description=(
            "Serve POST /v1/events without a credential (SLUICE_EVENTS_TRUST_NETWORK), for "
            "KServe's inference logger, which sends no header: only behind a NetworkPolicy "
            "or mesh policy that admits the model namespaces' pods alone. Not with "
            "events_token."
        ),
    )
    retrain_alerts: list[str] = Field(
        default_factory=lambda: ["SluiceFeatureDrift", "SluicePredictionDrift"],
        description="Alert names that start a retraining when they fire.",
    )
    retrain_group_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "Drift alerts of one model and environment that arrive within this many seconds "
            "of the first are one retraining, which names every drifted feature (as "
            "Alertmanager's group_wait); 0 starts a retraining on the first alert."
        ),
    )
    retrain_cooldown_seconds: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "After a retraining of a model for an environment starts, further drift alerts "
            "for the pair start none for this long (kept as a registry tag, so it outlives "
            "a restart)."
        ),
    )
    retrain_command: list[str] = Field(
        default_factory=lambda: [*_RETRAIN_MODULE, "--model-name", "{model}", "--since", "{since}"],
        description=(
            "With --forge local: the command a drift alert runs, one word per item, with "
            "{python}, {module} (models.<model with - as _>.train), {model}, {environment}, "
            "{features} (comma-separated), {since} (when the drift alert started, ISO 8601 "
            "UTC) and {drifted_version} filled in; the same values are in its environment "
            "(SLUICE_RETRAIN_SINCE, SLUICE_DRIFTED_FEATURES, ...). The default trains the "
            "example on its newest data. With --forge github the train workflow runs instead "
            "(repository_dispatch retrain)."
        ),
    )
    prometheus_url: str | None = Field(
        default=None,
        description=(
            "Prometheus the canary analysis queries (default for --target local: the local "
            "stack's)."
        ),
    )
    prometheus_bearer_token: SecretStr | None = Field(
        default=None, description="Bearer token for Prometheus, if it needs one."
    )
    argocd_url: str | None = Field(
        default=None, description="Argo CD API server, for --target kubernetes (https://argocd…)."
    )
    argocd_auth_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ARGOCD_AUTH_TOKEN", "argocd_auth_token"),
        description="Argo CD API token (ARGOCD_AUTH_TOKEN); read-only access to applications.",
    )
    argocd_application: str = Field(
        default="sluice-{environment}",
        description="Argo CD Application of an environment; {environment} is substituted.",
    )
    kubernetes_namespace: str = Field(
        default="models-{environment}",
        description="Namespace of an environment's InferenceServices ({environment} substituted).",
    )
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible incoming webhook for rollout events (none: no notices).",
    )
    evidence_key: SecretStr | None = Field(
        default=None,
        description=(
            "This controller's private Ed25519 key, PEM text (SLUICE_EVIDENCE_KEY; a "
            "Kubernetes secret): it signs the canary and shadow evidence the rollouts of this "
            "environment record (`sluice provenance keygen` writes a pair; the public half is "
            "named by the environment's evidence.controllerKeys). Unset, with "
            "evidence_key_file unset too: no evidence is recorded. Never logged or printed."
        ),
    )
    evidence_key_file: Path | None = Field(
        default=None,
        description=(
            "A file holding that key (SLUICE_EVIDENCE_KEY_FILE), read when evidence_key is not set."
        ),
    )
    state_dir: Path = Field(
        default=Path(".sluice"),
        description="Where local runs keep pid files, logs and service data.",
    )
    prediction_log_path: Path | None = Field(
        default=None,
        description=(
            "SQLite prediction log that POST /v1/feedback and `sluice feedback` write labels to "
            "(default: <state_dir>/local/predictions.sqlite, where the local runtime's router "
            "logs every primary and shadow answer, and for each further environment of the "
            "local stack <state_dir>/local/environments/ENV/predictions.sqlite); set, it is "
            "every environment's; not used when prediction_store_url is set."
        ),
    )
    prediction_store_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL prediction store, postgresql://user:password@host:5432/DATABASE, that "
            "POST /v1/feedback, `sluice feedback` and the shadow judge use instead of the SQLite "
            "log at prediction_log_path (unset: the SQLite log). Several `sluice serve` replicas "
            "may share it; the password is never printed."
        ),
    )
    prediction_store_retention_days: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How long the PostgreSQL prediction store keeps answers (by the time the request "
            "was sent) and outcomes (by the time they arrived) before deleting them."
        ),
    )
    kpi_series_window_seconds: float = Field(
        default=900.0,
        gt=0,
        description=(
            "The stretch of requests behind `sluice serve`'s KPI series (sluice_kpi on /metrics):"
            " each release's KPI checks (rollout.gates.kpis) per revision, over the requests "
            "answered in this many seconds before each check's outcomeDelay, counted as the "
            "canary judge counts them."
        ),
    )

    @field_validator("rollout_lease_namespace", mode="after")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        """A Kubernetes namespace name (DNS-1123 label), checked now rather than at the first
        lease."""
        if value is not None and not _DNS_LABEL.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes namespace name (lowercase letters, digits and "
                "'-', at most 63, starting and ending with a letter or digit)"
            )
        return value

    @field_validator("prediction_store_url", mode="after")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        """A ``postgresql://`` URL with a host and a database; the message never repeats it
        (it holds a password)."""
        if value is None:
            return None
        parts = urllib.parse.urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError(
                "not a URL such as postgresql://user:password@host:5432/sluice (value hidden: it "
                "may hold a password)"
            )
        if not parts.path.lstrip("/"):
            raise ValueError("the URL names no database: end it with /DATABASE, e.g. /sluice")
        return value

    @field_validator("state_dir", "prediction_log_path", "evidence_key_file", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Every path is absolute from here on, against the working directory at load time:
        a child process started with another ``cwd`` (Locust, a model server) would resolve
        a relative one against its own, and find nothing."""
        if value is None:
            return None
        return value.expanduser().resolve()


def _read_config_file(path: Path) -> dict[str, Any]:
    data = load_yaml_file(
        path,
        label=f"config file {path}",
        fix="fix the path or omit --config",
        limit=SETTINGS_FILE_MAX_BYTES,
        kind="settings file",
    )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
    return {str(key): value for key, value in data.items()}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from flags (``overrides``), environment, config file and defaults.

    Raises :class:`ConfigError` with one line naming the setting and what is wrong with it.
    """
    env_config = os.environ.get("SLUICE_CONFIG")
    explicit = config_file or (Path(env_config) if env_config else None)
    path = explicit or DEFAULT_CONFIG_FILE
    from_file = _read_config_file(path) if explicit or path.exists() else {}
    flags = {key: value for key, value in overrides.items() if value is not None}

    try:
        environment = _environment_values()
    except SettingsError as exc:
        # pydantic-settings parses list and dict fields as JSON, and fails with a traceback.
        found = re.search(r'field "([^"]+)"', str(exc))
        name = f"SLUICE_{found.group(1).upper()}" if found else "a SLUICE_* variable"
        raise ConfigError(
            f"environment variable {name} is not valid JSON; give a JSON list, e.g. "
            f'{name}=\'["a", "b"]\', and run again'
        ) from None
    try:
        # Later keys win: flags beat the environment, which beats the file.
        return Settings.model_validate({**from_file, **environment, **flags})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        origin = f" (from {path})" if field in from_file else ""
        raise ConfigError(
            f"setting {field}{origin}: {first['msg']}; fix it and run again"
        ) from None


def _environment_values() -> dict[str, Any]:
    """Environment values keyed by field name, read through pydantic-settings so that the
    ``SLUICE_`` prefix and the ecosystem's own names (``MLFLOW_TRACKING_URI``) both apply."""
    names: dict[str, str] = {}
    for field_name, info in Settings.model_fields.items():
        names[field_name] = field_name
        if isinstance(info.validation_alias, AliasChoices):
            for choice in info.validation_alias.choices:
                names[str(choice)] = field_name
    values = EnvSettingsSource(Settings)()
    return {names.get(key, key): value for key, value in values.items() if value is not None}
