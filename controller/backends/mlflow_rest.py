"""The calls Sluice makes to an MLflow tracking server's REST API, one method each, typed.

The registry, runs and webhooks are under ``/api/2.0/mlflow/`` (MLflow's documented REST API);
artifacts with ``mlflow-artifacts:`` URIs, which a server that proxies artifacts hands out, are
listed and read through ``/api/2.0/mlflow-artifacts/artifacts``. Answers are parsed straight into
small frozen records. Transport, auth and retries are those of
:class:`~controller.backends.mlflow_http.MlflowHttp`.

MLflow 3 keeps prompts as registered models tagged ``mlflow.prompt.is_prompt``. Like MLflow's
client, this one leaves them out of searches, treats one as an unknown model, and reads the
registered model before it writes a version's tags, a model's tags or an alias, and before it
asks where a version's artifacts are (so an unknown model is named in MLflow's words).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from controller.backends.mlflow_errors import MlflowCallError
from controller.backends.mlflow_http import MlflowHttp

__all__ = [
    "PROMPT_TAG",
    "MlflowRestClient",
    "ModelVersionRef",
    "RegisteredModel",
    "Run",
    "Webhook",
]

PROMPT_TAG = "mlflow.prompt.is_prompt"
_PROXY = "/api/2.0/mlflow-artifacts/artifacts"
#: How long :meth:`MlflowRestClient.create_model_version` waits for a pending version (MLflow's).
_AWAIT_CREATION_SECONDS = 300


@dataclass(frozen=True)
class ModelVersionRef:
    """What Sluice needs to know about one registered model version."""

    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model's name, aliases (alias -> version) and tags."""

    name: str
    aliases: dict[str, int]
    tags: dict[str, str]


@dataclass(frozen=True)
class Run:
    """A tracking run: where it is, where its artifacts are and what it logged."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class Webhook:
    """A registry webhook, as far as Sluice looks at one."""

    webhook_id: str
    name: str


def _pairs(items: Any, key: str = "key", value: str = "value") -> dict[str, str]:
    """MLflow's ``[{key, value}, ...]`` lists as a dict (a later entry wins, as in MLflow)."""
    return {str(item[key]): str(item.get(value, "")) for item in items or ()}


def _version(document: dict[str, Any]) -> ModelVersionRef:
    return ModelVersionRef(
        name=str(document.get("name", "")),
        version=int(str(document.get("version", "0"))),
        run_id=document.get("run_id") or None,
        source=str(document.get("source", "")),
        aliases=tuple(str(alias) for alias in document.get("aliases") or ()),
        tags=_pairs(document.get("tags")),
    )


def _model(document: dict[str, Any]) -> RegisteredModel:
    aliases = _pairs(document.get("aliases"), "alias", "version")
    return RegisteredModel(
        name=str(document.get("name", "")),
        aliases={alias: int(version) for alias, version in aliases.items()},
        tags=_pairs(document.get("tags")),
    )


def _not_found(name: str) -> MlflowCallError:
    """What MLflow's client raises for a prompt asked for as a model."""
    return MlflowCallError(
        "RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name!r} not found."
    )


class MlflowRestClient:
    """An MLflow tracking server's registry, runs, webhooks and proxied artifacts."""

    def __init__(self, tracking_uri: str) -> None:
        self.http = MlflowHttp(tracking_uri)

    # -- registered models ------------------------------------------------------------------

    def get_registered_model(self, name: str) -> RegisteredModel:
        """One registered model (a prompt is not one)."""
        found = self.http.call("GET", "registered-models/get", params={"name": name})
        model = _model(found.get("registered_model") or {})
        if PROMPT_TAG in model.tags:
            raise _not_found(name)
        return model

    def search_registered_models(self, filter_string: str | None) -> Iterator[RegisteredModel]:
        """Every registered model ``filter_string`` matches (every one if None), 1,000 a page."""
        hide_prompts = f"tag.`{PROMPT_TAG}` != 'true'"
        params: dict[str, Any] = {
            "filter": f"{filter_string} AND {hide_prompts}" if filter_string else hide_prompts,
            "max_results": 1000,
        }
        while True:
            page = self.http.call("GET", "registered-models/search", params=params)
            yield from (_model(found) for found in page.get("registered_models") or ())
            params["page_token"] = page.get("next_page_token")
            if not params["page_token"]:
                return

    def create_registered_model(self, name: str) -> None:
        """Create an empty registered model."""
        self.http.call("POST", "registered-models/create", body={"name": name})

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the registered model."""
        self.get_registered_model(name)
        body = {"name": name, "key": key, "value": value}
        self.http.call("POST", "registered-models/set-tag", body=body)

    def set_registered_model_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self.get_registered_model(name)
        body = {"name": name, "alias": alias, "version": str(version)}
        self.http.call("POST", "registered-models/alias", body=body)

    # -- model versions ---------------------------------------------------------------------

    def get_model_version(self, name: str, version: int) -> ModelVersionRef:
        """One version, with its aliases."""
        params = {"name": name, "version": str(version)}
        found = self.http.call("GET", "model-versions/get", params=params)
        return _version(found.get("model_version") or {})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersionRef:
        """The version an alias points at."""
        params = {"name": name, "alias": alias}
        found = self.http.call("GET", "registered-models/alias", params=params)
        return _version(found.get("model_version") or {})

    def search_model_versions(self, filter_string: str) -> list[ModelVersionRef]:
        """Every version ``filter_string`` matches (the server leaves their aliases out)."""
        params: dict[str, Any] = {"filter": filter_string, "max_results": 10_000}
        found: list[ModelVersionRef] = []
        while True:
            page = self.http.call("GET", "model-versions/search", params=params)
            found.extend(_version(version) for version in page.get("model_versions") or ())
            params["page_token"] = page.get("next_page_token")
            if not params["page_token"]:
                return found

    def get_model_version_download_uri(self, name: str, version: int) -> str:
        """Where the version's artifacts download from (``mlflow-artifacts:/…``, ``s3://…``)."""
        self.get_registered_model(name)
        params = {"name": name, "version": str(version)}
        found = self.http.call("GET", "model-versions/get-download-uri", params=params)
        return str(found.get("artifact_uri", ""))

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: Mapping[str, str],
        model_id: str | None,
    ) -> ModelVersionRef:
        """Register a version and wait (up to 5 minutes, as MLflow does) until it is READY."""
        if PROMPT_TAG in tags:
            raise MlflowCallError(
                "INVALID_PARAMETER_VALUE", "Prompts cannot be registered as models."
            )
        body: dict[str, Any] = {
            "name": name,
            "source": source,
            "tags": [{"key": key, "value": str(value)} for key, value in tags.items()],
        }
        body.update({k: v for k, v in (("run_id", run_id), ("model_id", model_id)) if v})
        answer = self.http.call("POST", "model-versions/create", body=body)
        created: dict[str, Any] = answer.get("model_version") or {}
        deadline = time.monotonic() + _AWAIT_CREATION_SECONDS
        while created.get("status") == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(1)
            params = {"name": name, "version": str(created["version"])}
            answer = self.http.call("GET", "model-versions/get", params=params)
            created = answer.get("model_version") or {}
        if created.get("status", "READY") != "READY":
            raise MlflowCallError(
                "INTERNAL_ERROR",
                f"Model version creation failed for model name: {name} version: "
                f"{created.get('version')} with status: {created.get('status')} and message: "
                f"{created.get('status_message', '')}",
            )
        return _version(created)

    def set_model_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set one tag on a version."""
        self.get_registered_model(name)
        body = {"name": name, "version": str(version), "key": key, "value": value}
        self.http.call("POST", "model-versions/set-tag", body=body)

    def delete_model_version_tag(self, name: str, version: int, key: str) -> None:
        """Remove one tag from a version."""
        self.get_registered_model(name)
        body = {"name": name, "version": str(version), "key": key}
        self.http.call("DELETE", "model-versions/delete-tag", body=body)

    # -- runs -------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """A run's location, artifact root, metrics, params and tags."""
        run = self.http.call("GET", "runs/get", params={"run_id": run_id}).get("run") or {}
        info, data = run.get("info") or {}, run.get("data") or {}
        metrics = {str(m["key"]): float(m.get("value", 0.0)) for m in data.get("metrics") or ()}
        return Run(
            run_id=run_id,
            experiment_id=str(info.get("experiment_id", "")),
            artifact_uri=str(info.get("artifact_uri", "")),
            metrics=metrics,
            params=_pairs(data.get("params")),
            tags=_pairs(data.get("tags")),
        )

    # -- webhooks ---------------------------------------------------------------------------

    def list_webhooks(self) -> Iterator[Webhook]:
        """Every registry webhook, 100 a page."""
        params: dict[str, Any] = {"max_results": 100}
        while True:
            page = self.http.call("GET", "webhooks", params=params)
            for hook in page.get("webhooks") or ():
                yield Webhook(str(hook["webhook_id"]), str(hook.get("name", "")))
            params["page_token"] = page.get("next_page_token")
            if not params["page_token"]:
                return

    def create_webhook(
        self, name: str, url: str, events: list[tuple[str, str]], secret: str
    ) -> str:
        """Create a webhook for ``events`` ((entity, action) pairs); returns its id."""
        body = {"name": name, "url": url, "events": _events(events), "secret": secret}
        created = self.http.call("POST", "webhooks", body=body).get("webhook") or {}
        return str(created.get("webhook_id", ""))

    def update_webhook(
        self, webhook_id: str, url: str, events: list[tuple[str, str]], secret: str
    ) -> None:
        """Rewrite a webhook's URL, events and secret, and make it active."""
        body = {
            "webhook_id": webhook_id,
            "url": url,
            "events": _events(events),
            "secret": secret,
            "status": "ACTIVE",
        }
        self.http.call("PATCH", f"webhooks/{quote(webhook_id, safe='')}", body=body)

    # -- proxied artifacts ------------------------------------------------------------------

    def _proxy(self, uri: str) -> tuple[str, str]:
        """The proxy's endpoint URL for an ``mlflow-artifacts:`` URI (on the tracking server,
        or the host the URI names) and the artifact path under it."""
        parsed, tracking = urlsplit(uri), urlsplit(self.http.base_url)
        endpoint = f"{tracking.path.rstrip('/')}{_PROXY}"
        netloc = parsed.netloc or tracking.netloc
        return urlunsplit((tracking.scheme, netloc, endpoint, "", "")), parsed.path.strip("/")

    def list_proxied(self, uri: str) -> list[str]:
        """The names in a proxied artifact directory (empty if it does not exist).

        An error answer raises :class:`requests.HTTPError`, as MLflow's artifact client does.
        """
        endpoint, root = self._proxy(uri)
        response = self.http.send("GET", endpoint, params={"path": root})
        response.raise_for_status()
        files = response.json().get("files") or ()
        return sorted(str(found["path"]) for found in files)

    def download_proxied(self, uri: str) -> bytes:
        """One proxied artifact file; :class:`requests.HTTPError` on an error answer."""
        endpoint, path = self._proxy(uri)
        response = self.http.send("GET", f"{endpoint}/{quote(path)}")
        response.raise_for_status()
        return response.content


def _events(events: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"entity": entity.upper(), "action": action.upper()} for entity, action in events]
