"""The MLflow model registry, seen through Sluice's error tree: versions, aliases, runs and
the artifacts the proposal and the rollout read, every call inside
:func:`~controller.backends.mlflow_errors.registry_errors` (which, with
:func:`~controller.backends.mlflow_errors.configure_mlflow_http`, is importable from here too).

Sluice talks to the tracking server's REST API (:mod:`controller.backends.mlflow_rest`), so a
command that reads the registry does not import MLflow (about 0.8 s of CPU, see
``benchmarks/cli_startup.py``). The tracking URI must therefore be an ``http(s)://`` server; a
``databricks``, ``file:`` or ``sqlite:`` URI is refused with a
:class:`~controller.errors.ConfigError`. Artifacts behind the
server's proxy (``mlflow-artifacts:`` URIs, what ``mlflow server`` hands out by default) are
listed and read through the server too; artifacts anywhere else (``s3://``, ``gs://``,
``file://``…) need MLflow's artifact stores and their credentials, so that branch alone imports
MLflow (``mlflow.artifacts`` and ``MlflowClient``), when it runs.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests

from controller.backends.mlflow_errors import (
    NOT_FOUND_CODES,
    MlflowCallError,
    MlflowServerError,
    configure_mlflow_http,
    is_missing_alias,
    registry_errors,
)
from controller.backends.mlflow_rest import MlflowRestClient, ModelVersionRef
from controller.domain import ModelVersion, RunSummary
from controller.errors import ConfigError, InputError, ModelNotFound
from controller.payloads import example_rows, signature_columns, signature_rows
from controller.redact import redact

if TYPE_CHECKING:
    from pydantic import BaseModel

    from controller.quality.data_profile import DataProfile, SliceProfiles

_Document = TypeVar("_Document", bound="BaseModel")

__all__ = [
    "PROFILE_ARTIFACT",
    "SLICE_PROFILES_ARTIFACT",
    "MlflowRegistry",
    "ModelVersionRef",
    "configure_mlflow_http",
    "registry_errors",
]

#: The artifact the training step logs the reference data profile as.
PROFILE_ARTIFACT = "reference_profile.json"
#: The artifact a training step may log one profile per value of a column as (optional).
SLICE_PROFILES_ARTIFACT = "reference_profiles_by.json"

#: Model names per ``search_registered_models`` request of :meth:`MlflowRegistry.aliases_of`
#: (the filter travels in a GET's query string).
ALIAS_BATCH = 100

#: The events of the webhook :meth:`MlflowRegistry.ensure_webhook` keeps.
_ALIAS_EVENTS = [("model_version_alias", "created"), ("model_version_alias", "deleted")]


def _proxied(uri: str) -> bool:
    """Whether an artifact URI is served by the tracking server's artifact proxy."""
    return urlsplit(uri).scheme == "mlflow-artifacts"


class MlflowRegistry:
    """Model versions, aliases and tags in an MLflow tracking server's registry."""

    def __init__(self, tracking_uri: str) -> None:
        if urlsplit(tracking_uri).scheme.lower() not in {"http", "https"}:
            raise ConfigError(
                f"MLflow tracking URI {redact(tracking_uri)!r} is not an http(s) URL: Sluice "
                "talks to an MLflow tracking server over HTTP(S); set MLFLOW_TRACKING_URI to "
                "the server's http:// or https:// address"
            )
        self.tracking_uri = tracking_uri
        self._client = MlflowRestClient(tracking_uri)

    def version_by_alias(self, name: str, alias: str) -> ModelVersionRef | None:
        """The version an alias points at, or None when the model or the alias does not exist."""
        with registry_errors(self.tracking_uri, f"alias {alias!r} of model {name!r}"):
            try:
                return self._client.get_model_version_by_alias(name, alias)
            except MlflowServerError as exc:
                if is_missing_alias(exc):
                    return None
                raise

    def get_version(self, name: str, version: int) -> ModelVersionRef:
        """One version; :class:`ModelNotFound` when it does not exist."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            return self._client.get_model_version(name, version)

    def versions(self, name: str) -> list[ModelVersionRef]:
        """Every version of a model, oldest first (empty when the model does not exist)."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            found = self._client.search_model_versions(f"name = '{name}'")
            if not found:
                return []
            # Search results leave aliases out; the registered model has them.
            model = self._client.get_registered_model(name)
        aliases: dict[int, list[str]] = {}
        for alias, version in model.aliases.items():
            aliases.setdefault(version, []).append(alias)
        return sorted(
            (replace(ref, aliases=tuple(sorted(aliases.get(ref.version, [])))) for ref in found),
            key=lambda ref: ref.version,
        )

    def versions_of_run(self, run_id: str) -> list[ModelVersionRef]:
        """The versions registered from a run, oldest first (empty when there are none)."""
        if not run_id.isalnum():  # MLflow run ids are hex; anything else would be in the filter
            return []
        with registry_errors(self.tracking_uri, f"versions of run {run_id!r}"):
            found = self._client.search_model_versions(f"run_id = '{run_id}'")
        return sorted(found, key=lambda r: r.version)

    def all_aliases(self) -> dict[str, dict[str, int]]:
        """Every registered model's aliases (model -> alias -> version), 1,000 models a request.

        One paged search instead of one request per model keeps a ``sluice serve`` pass over
        many models to a handful of round trips.
        """
        with registry_errors(self.tracking_uri, "registered models"):
            return {m.name: m.aliases for m in self._client.search_registered_models(None)}

    def aliases_of(self, models: Collection[str]) -> dict[str, dict[str, int]]:
        """The aliases of ``models`` that are registered, :data:`ALIAS_BATCH` names a search
        (``name IN (...)``): a pass's cost follows the watched models, not the registry's
        size. A name a filter cannot quote is asked for on its own."""
        names = sorted(set(models))
        quotable = [name for name in names if "'" not in name and "\\" not in name]
        aliases: dict[str, dict[str, int]] = {}
        with registry_errors(self.tracking_uri, "registered models"):
            for start in range(0, len(quotable), ALIAS_BATCH):
                listed = ", ".join(f"'{name}'" for name in quotable[start : start + ALIAS_BATCH])
                found = self._client.search_registered_models(f"name IN ({listed})")
                aliases.update((model.name, model.aliases) for model in found)
            for name in names:
                if name in quotable:
                    continue
                try:
                    aliases[name] = self._client.get_registered_model(name).aliases
                except MlflowCallError as exc:
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
            artifact_uri = self._client.get_model_version_download_uri(name, ref.version)
        return ModelVersion(
            name=ref.name,
            version=ref.version,
            run_id=ref.run_id,
            source=ref.source,
            artifact_uri=artifact_uri,
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
            url=f"{base}/#/experiments/{run.experiment_id}/runs/{run_id}",
            metrics=run.metrics,
            params=run.params,
            tags={k: v for k, v in run.tags.items() if not k.startswith("mlflow.")},
        )

    def _run_artifacts(self, run_id: str) -> tuple[str, list[str]]:
        """The run's artifact root and the names at its top (call inside registry_errors)."""
        root = self._client.get_run(run_id).artifact_uri
        if _proxied(root):
            return root, self._client.list_proxied(root)
        listed = self._mlflow_client().list_artifacts(run_id)
        return root, [str(artifact.path) for artifact in listed]

    def _mlflow_client(self) -> Any:
        """MLflow's own client, for an artifact store only MLflow can read (s3://, gs://…):
        imported here, when such a store is met."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def has_reference_profile(self, run_id: str) -> bool:
        """Whether the run logged a training data profile (a listing, no download)."""
        with registry_errors(self.tracking_uri, f"run {run_id!r}"):
            return PROFILE_ARTIFACT in self._run_artifacts(run_id)[1]

    def reference_profile(self, run_id: str) -> DataProfile | None:
        """The training data profile logged with a run, or None if it has none.

        A profile this Sluice cannot read (a newer schema version) is an :class:`InputError`
        that says so, not a missing profile.
        """
        text = self._profile_text(run_id, PROFILE_ARTIFACT)
        if text is None:
            return None
        # pandas comes with the profile's module: only a command that reads a profile pays it.
        from controller.quality.data_profile import DataProfile

        return self._validated(DataProfile, text, f"the reference profile of run {run_id}")

    def slice_profiles(self, run_id: str) -> SliceProfiles | None:
        """The per-value training profiles logged with a run (``reference_profiles_by.json``),
        or None if it logged none; one this Sluice cannot read is an :class:`InputError`."""
        text = self._profile_text(run_id, SLICE_PROFILES_ARTIFACT)
        if text is None:
            return None
        from controller.quality.data_profile import SliceProfiles

        return self._validated(SliceProfiles, text, f"the per-slice profiles of run {run_id}")

    def _profile_text(self, run_id: str, name: str) -> str | None:
        with registry_errors(self.tracking_uri, f"run {run_id!r}"):
            root, names = self._run_artifacts(run_id)
            if name not in names:
                return None
            return self._download_profile(run_id, root, name)

    @staticmethod
    def _validated(model: type[_Document], text: str, what: str) -> _Document:
        from controller.quality.data_profile import PROFILE_SCHEMA_VERSION

        try:
            return model.model_validate_json(text)
        except ValueError:
            raise InputError(
                f"{what} is not one this Sluice reads (schema version "
                f"{PROFILE_SCHEMA_VERSION}); upgrade Sluice"
            ) from None

    def _download_profile(self, run_id: str, root: str, name: str) -> str:
        if not _proxied(root):
            with tempfile.TemporaryDirectory() as tmp:
                path = self._mlflow_client().download_artifacts(run_id, name, tmp)
                return Path(path).read_text(encoding="utf-8")
        uri = f"{root.rstrip('/')}/{name}"
        try:
            return self._client.download_proxied(uri).decode("utf-8")
        except (MlflowCallError, requests.RequestException) as exc:
            # MLflow's artifact client reports any failed download as INTERNAL_ERROR.
            raise MlflowCallError(
                "INTERNAL_ERROR", f"The following failures occurred while downloading {uri}: {exc}"
            ) from None

    def ensure_webhook(self, name: str, url: str, secret: str) -> str:
        """Create or update the registry webhook ``name`` that tells Sluice an alias moved.

        Always rewrites URL and secret: MLflow never returns a secret, so there is no way to
        tell a stale one from a current one.
        """
        with registry_errors(self.tracking_uri, f"webhook {name!r}"):
            for hook in self._client.list_webhooks():
                if hook.name == name:
                    self._client.update_webhook(hook.webhook_id, url, _ALIAS_EVENTS, secret)
                    return hook.webhook_id
            return self._client.create_webhook(name, url, _ALIAS_EVENTS, secret)

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
            except MlflowServerError as exc:
                if exc.error_code not in NOT_FOUND_CODES:
                    raise
                self._client.create_registered_model(name)
            # MLflow 3 logs models as `models:/m-<id>`; the server wants that id spelled out.
            model_id = (
                model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
            )
            return self._client.create_model_version(name, model_uri, run_id, tags, model_id)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        with registry_errors(self.tracking_uri, f"alias {alias!r} of model {name!r}"):
            self._client.set_registered_model_alias(name, alias, version)

    def mlmodel(self, name: str, version: int) -> dict[str, Any]:
        """The version's ``MLmodel`` file, parsed (flavours, signature, input example info)."""
        from ruamel.yaml import YAML

        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            base = self._client.get_model_version_download_uri(name, version)
            text = self._artifact_text(base, "MLmodel")
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
            base = self._client.get_model_version_download_uri(name, version)
            text = self._artifact_text(base, "MLmodel")
            mlmodel: dict[str, Any] = {}
            if text is not None:
                from ruamel.yaml import YAML

                loaded = YAML(typ="safe").load(text)
                mlmodel = dict(loaded) if isinstance(loaded, dict) else {}
            info = mlmodel.get("saved_input_example_info") or {}
            example_path = str(info.get("artifact_path") or "input_example.json")
            example = self._artifact_text(base, example_path)
        columns = signature_columns(mlmodel)
        names = [column for column, _ in columns] if columns else None
        rows = example_rows(json.loads(example), names) if example is not None else []
        if not rows and columns:
            rows = signature_rows(columns)
        return rows[:limit]

    def _artifact_text(self, base: str, path: str) -> str | None:
        """One file of a version's model directory, or None when it cannot be read (as with
        MLflow's client: no such file, or any failure to fetch it)."""
        uri = f"{base.rstrip('/')}/{path}"
        if _proxied(base):
            parts = PurePosixPath(path).parts
            if not parts or parts[0] == "/" or ".." in parts:
                return None
            try:
                return self._client.download_proxied(uri).decode("utf-8")
            except (MlflowCallError, OSError):  # requests' errors are OSErrors
                return None
        import mlflow.artifacts  # an artifact store only MLflow can read
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri
                )
            except (MlflowException, OSError):
                return None
            return Path(local).read_text(encoding="utf-8")

    def registered_model_tags(self, name: str) -> dict[str, str]:
        """The registered model's own tags; :class:`ModelNotFound` when there is no such model."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            return self._client.get_registered_model(name).tags

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the registered model (not on a version)."""
        with registry_errors(self.tracking_uri, f"model {name!r}"):
            self._client.set_registered_model_tag(name, key, value)

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one version."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(name, version, key, value)

    def delete_version_tags(self, name: str, version: int, keys: tuple[str, ...]) -> None:
        """Remove tags from one version; tags it does not have are skipped."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            present = self._client.get_model_version(name, version).tags
            for key in keys:
                if key in present:
                    self._client.delete_model_version_tag(name, version, key)

    def model_names(self) -> list[str]:
        """Every registered model's name."""
        return sorted(self.all_aliases())
