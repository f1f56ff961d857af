"""The MLflow model registry, seen through Sluice's error tree: versions, aliases, runs and
the artifacts the proposal and the rollout read, every call inside
:func:`~controller.backends.mlflow_errors.registry_errors` (which, with
:func:`~controller.backends.mlflow_errors.configure_mlflow_http`, is importable from here too).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow.entities.webhook import WebhookEvent
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from controller.backends.mlflow_errors import (
    NOT_FOUND_CODES,
    configure_mlflow_http,
    is_missing_alias,
    registry_errors,
)
from controller.domain import ModelVersion, RunSummary
from controller.errors import InputError, ModelNotFound
from controller.payloads import example_rows, signature_columns, signature_rows
from controller.quality.data_profile import PROFILE_SCHEMA_VERSION, DataProfile
from controller.redact import redact

__all__ = [
    "PROFILE_ARTIFACT",
    "MlflowRegistry",
    "ModelVersionRef",
    "configure_mlflow_http",
    "registry_errors",
]

#: The artifact the training step logs the reference data profile as.
PROFILE_ARTIFACT = "reference_profile.json"


@dataclass(frozen=True)
class ModelVersionRef:
    """What Sluice needs to know about one registered model version."""

    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


#: Model names per ``search_registered_models`` request of :meth:`MlflowRegistry.aliases_of`
#: (the filter travels in a GET's query string).
ALIAS_BATCH = 100


def _aliases(model: object) -> dict[str, int]:
    """alias -> version of one registered model entity."""
    found = getattr(model, "aliases", None) or {}
    return {str(alias): int(version) for alias, version in found.items()}


class MlflowRegistry:
    """Model versions, aliases and tags in an MLflow tracking server's registry."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _ref(self, version: object) -> ModelVersionRef:
        return ModelVersionRef(
            name=str(getattr(version, "name", "")),
            version=int(str(getattr(version, "version", "0"))),
            run_id=getattr(version, "run_id", None) or None,
            source=str(getattr(version, "source", "")),
            aliases=tuple(getattr(version, "aliases", ()) or ()),
            tags=dict(getattr(version, "tags", {}) or {}),
        )

    def version_by_alias(self, name: str, alias: str) -> ModelVersionRef | None:
        """The version an alias points at, or None when the model or the alias does not exist."""
        with registry_errors(self.tracking_uri, f"alias {alias!r} of model {name!r}"):
            try:
                version = self._client.get_model_version_by_alias(name, alias)
            except RestException as exc:
                if is_missing_alias(exc):
                    return None
                raise
        return self._ref(version)

    def get_version(self, name: str, version: int) -> ModelVersionRef:
        """One version; :class:`ModelNotFound` when it does not exist."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            return self._ref(self._client.get_model_version(name, str(version)))

    def versions(self, name: str) -> list[ModelVersionRef]:
        """Every version of a model, oldest first (empty when the model does not exist)."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            found = self._client.search_model_versions(filter_string=f"name = '{name}'")
            if not found:
                return []
            # Search results leave aliases out; the registered model has them.
            model = self._client.get_registered_model(name)
        aliases: dict[int, list[str]] = {}
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            aliases.setdefault(int(version), []).append(str(alias))
        refs = [self._ref(version) for version in found]
        return sorted(
            (replace(ref, aliases=tuple(sorted(aliases.get(ref.version, [])))) for ref in refs),
            key=lambda ref: ref.version,
        )

    def versions_of_run(self, run_id: str) -> list[ModelVersionRef]:
        """The versions registered from a run, oldest first (empty when there are none)."""
        if not run_id.isalnum():  # MLflow run ids are hex; anything else would be in the filter
            return []
        with registry_errors(self.tracking_uri, f"versions of run {run_id!r}"):
            found = self._client.search_model_versions(filter_string=f"run_id = '{run_id}'")
        return sorted((self._ref(version) for version in found), key=lambda r: r.version)

    def all_aliases(self) -> dict[str, dict[str, int]]:
        """Every registered model's aliases (model -> alias -> version), 1,000 models a request.

        One paged search instead of one request per model keeps a ``sluice serve`` pass over
        many models to a handful of round trips.
        """
        aliases: dict[str, dict[str, int]] = {}
        token: str | None = None
        with registry_errors(self.tracking_uri, "registered models"):
            while True:
                page = self._client.search_registered_models(max_results=1000, page_token=token)
                for model in page:
                    aliases[str(model.name)] = {
                        str(alias): int(version)
                        for alias, version in (getattr(model, "aliases", None) or {}).items()
                    }
                token = page.token
                if not token:
                    return aliases

    def aliases_of(self, models: Collection[str]) -> dict[str, dict[str, int]]:
        """The aliases of ``models`` that are registered, :data:`ALIAS_BATCH` names a search
        (``name IN (...)``): a pass's cost follows the watched models, not the registry's
        size. A name a filter cannot quote is asked for on its own."""
        names = sorted(set(models))
        quotable = [name for name in names if "'" not in name and "\\" not in name]
        aliases: dict[str, dict[str, int]] = {}
        with registry_errors(self.tracking_uri, "registered models"):
            for start in range(0, len(quotable), ALIAS_BATCH):
                batch = quotable[start : start + ALIAS_BATCH]
                listed = ", ".join(f"'{name}'" for name in batch)
                token: str | None = None
                while True:
                    page = self._client.search_registered_models(
                        filter_string=f"name IN ({listed})", max_results=1000, page_token=token
                    )
                    aliases.update((str(m.name), _aliases(m)) for m in page)
                    token = page.token
                    if not token:
                        break
            for name in names:
                if name in quotable:
                    continue
                try:
                    aliases[name] = _aliases(self._client.get_registered_model(name))
                except MlflowException as exc:
                    if exc.error_code not in NOT_FOUND_CODES:
                        raise
        return aliases

    def resolve(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """A version by number or alias, with the location its artifacts download from."""
        if (version is None) == (alias is None):
            raise InputError("give exactly one of a version and an alias")
        if alias is not None:
            ref = self.version_by_alias(name, alias)
            if ref is None:
                raise ModelNotFound(
                    f"model {name!r} has no alias {alias!r} in the registry at "
                    f"{redact(self.tracking_uri)}; train and register a version that passes "
                    "the quality gate, or pass --version"
                )
        else:
            ref = self.get_version(name, int(str(version)))
        with registry_errors(self.tracking_uri, f"version {ref.version} of model {name!r}"):
            artifact_uri = self._client.get_model_version_download_uri(name, str(ref.version))
        return ModelVersion(
            name=ref.name,
            version=ref.version,
            run_id=ref.run_id,
            source=ref.source,
            artifact_uri=str(artifact_uri),
            aliases=ref.aliases,
            tags=dict(ref.tags),
        )

    def run_summary(self, run_id: str) -> RunSummary:
        """The training run's metrics, params, tags and its link in the MLflow UI."""
        with registry_errors(self.tracking_uri, f"run {run_id!r}"):
            run = self._client.get_run(run_id)
        base = redact(self.tracking_uri).rstrip("/")
        return RunSummary(
            run_id=run_id,
            url=f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}",
            metrics={str(k): float(v) for k, v in run.data.metrics.items()},
            params={str(k): str(v) for k, v in run.data.params.items()},
            tags={str(k): str(v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        )

    def has_reference_profile(self, run_id: str) -> bool:
        """Whether the run logged a training data profile (a listing, no download)."""
        with registry_errors(self.tracking_uri, f"run {run_id!r}"):
            return PROFILE_ARTIFACT in {a.path for a in self._client.list_artifacts(run_id)}

    def reference_profile(self, run_id: str) -> DataProfile | None:
        """The training data profile logged with a run, or None if it has none.

        A profile this Sluice cannot read (a newer schema version) is an :class:`InputError`
        that says so, not a missing profile.
        """
        with registry_errors(self.tracking_uri, f"run {run_id!r}"):
            names = {artifact.path for artifact in self._client.list_artifacts(run_id)}
            if PROFILE_ARTIFACT not in names:
                return None
            with tempfile.TemporaryDirectory() as tmp:
                path = self._client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)
                text = Path(path).read_text(encoding="utf-8")
        try:
            return DataProfile.model_validate_json(text)
        except ValueError:
            raise InputError(
                f"the reference profile of run {run_id} is not one this Sluice reads "
                f"(schema version {PROFILE_SCHEMA_VERSION}); upgrade Sluice"
            ) from None

    def ensure_webhook(self, name: str, url: str, secret: str) -> str:
        """Create or update the registry webhook ``name`` that tells Sluice an alias moved.

        Always rewrites URL and secret: MLflow never returns a secret, so there is no way to
        tell a stale one from a current one.
        """
        # MLflow's parameter is an invariant list of a union; the list must be declared as such.
        events: list[Any] = [
            WebhookEvent("model_version_alias", "created"),
            WebhookEvent("model_version_alias", "deleted"),
        ]
        with registry_errors(self.tracking_uri, f"webhook {name!r}"):
            token: str | None = None
            while True:
                page = self._client.list_webhooks(max_results=100, page_token=token)
                for hook in page:
                    if hook.name == name:
                        self._client.update_webhook(
                            hook.webhook_id, url=url, events=events, secret=secret, status="ACTIVE"
                        )
                        return str(hook.webhook_id)
                token = page.token
                if not token:
                    break
            created = self._client.create_webhook(name, url, events, secret=secret)
            return str(created.webhook_id)

    def version_url(self, name: str, version: int) -> str:
        """Link to a version in the MLflow UI."""
        return f"{redact(self.tracking_uri).rstrip('/')}/#/models/{name}/versions/{version}"

    def register(
        self, name: str, model_uri: str, run_id: str | None, tags: Mapping[str, str]
    ) -> ModelVersionRef:
        """Create a version of ``name`` from a logged model, creating the model on first use."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            try:
                self._client.get_registered_model(name)
            except RestException as exc:
                if str(exc.error_code) not in NOT_FOUND_CODES:
                    raise
                self._client.create_registered_model(name)
            # MLflow 3 logs models as `models:/m-<id>`; the server wants that id spelled out.
            model_id = (
                model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
            )
            created = self._client.create_model_version(
                name=name, source=model_uri, run_id=run_id, tags=dict(tags), model_id=model_id
            )
            return self._ref(created)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        with registry_errors(self.tracking_uri, f"alias {alias!r} of model {name!r}"):
            self._client.set_registered_model_alias(name, alias, str(version))

    def mlmodel(self, name: str, version: int) -> dict[str, Any]:
        """The version's ``MLmodel`` file, parsed (flavours, signature, input example info)."""
        from ruamel.yaml import YAML

        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            text = self._artifact_text(name, version, "MLmodel")
        if text is None:
            raise ModelNotFound(
                f"version {version} of model {name!r} has no MLmodel file: it was not logged "
                "with an MLflow flavour (mlflow.<flavour>.log_model); log it with one"
            )
        document = YAML(typ="safe").load(text)
        return dict(document) if isinstance(document, dict) else {}

    def input_rows(self, name: str, version: int, limit: int = 100) -> list[dict[str, object]]:
        """Up to ``limit`` rows of the version's logged input example, else placeholder rows
        shaped by its column signature (empty when it has neither).

        A load test sends these, so its requests look like the model's real inputs.
        """
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            text = self._artifact_text(name, version, "MLmodel")
            mlmodel: dict[str, Any] = {}
            if text is not None:
                from ruamel.yaml import YAML

                loaded = YAML(typ="safe").load(text)
                mlmodel = dict(loaded) if isinstance(loaded, dict) else {}
            info = mlmodel.get("saved_input_example_info") or {}
            example_path = str(info.get("artifact_path") or "input_example.json")
            example = self._artifact_text(name, version, example_path)
        columns = signature_columns(mlmodel)
        names = [column for column, _ in columns] if columns else None
        rows = example_rows(json.loads(example), names) if example is not None else []
        if not rows and columns:
            rows = signature_rows(columns)
        return rows[:limit]

    def _artifact_text(self, name: str, version: int, path: str) -> str | None:
        """One file of the version's model directory, or None when it has no such file."""
        base = self._client.get_model_version_download_uri(name, str(version))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{str(base).rstrip('/')}/{path}",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except (MlflowException, OSError):
                return None
            return Path(local).read_text(encoding="utf-8")

    def registered_model_tags(self, name: str) -> dict[str, str]:
        """The registered model's own tags; :class:`ModelNotFound` when there is no such model."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            model = self._client.get_registered_model(name)
        return {str(k): str(v) for k, v in (getattr(model, "tags", None) or {}).items()}

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the registered model (not on a version)."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            self._client.set_registered_model_tag(name, key, value)

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one version."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(name, str(version), key, value)

    def delete_version_tags(self, name: str, version: int, keys: tuple[str, ...]) -> None:
        """Remove tags from one version; tags it does not have are skipped."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            present = self._client.get_model_version(name, str(version)).tags or {}
            for key in keys:
                if key in present:
                    self._client.delete_model_version_tag(name, str(version), key)

    def model_names(self) -> list[str]:
        """Every registered model's name."""
        return sorted(self.all_aliases())
