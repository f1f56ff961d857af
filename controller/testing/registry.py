"""A model registry in memory: versions, aliases, tags and runs, as MLflow's registry keeps them.

Why it exists: a proposal, a serve pass and a rollout ask the registry a handful of questions
(resolve a version or an alias, the run behind it, the aliases of every model, the tags a
rollout writes), and a service test should not need a tracking server to answer them.
:class:`MemoryRegistry` is the :class:`~controller.ports.RolloutRegistry`,
:class:`~controller.ports.ProposalRegistry`, :class:`~controller.ports.AliasIndex` and
:class:`~controller.ports.ModelTagStore` of :class:`~controller.backends.mlflow_registry.
MlflowRegistry`, raising the same :mod:`controller.errors` for the same misses;
``tests/test_registry_contract.py`` holds the two to the same behaviour. :meth:`register`
plays training and registration; :attr:`outage` makes every call fail as an unreachable
tracking server does.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from controller.domain import ModelVersion, RunSummary
from controller.errors import InputError, ModelNotFound, RegistryUnavailable

if TYPE_CHECKING:
    from controller.ports import AliasIndex, ModelTagStore, ProposalRegistry, RolloutRegistry
    from controller.quality.data_profile import DataProfile  # pandas and numpy load with it

__all__ = ["MemoryRegistry"]


@dataclass
class _Model:
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: dict[int, list[dict[str, object]]] = field(default_factory=dict)


class MemoryRegistry:
    """Registered models in dicts (thread-safe); ``url`` stands for the tracking server's."""

    def __init__(self, url: str = "memory://registry") -> None:
        self.url = url
        self._models: dict[str, _Model] = {}
        self._runs: dict[str, RunSummary] = {}
        self._profiles: dict[str, DataProfile] = {}
        self._run_ids = itertools.count(1)
        self._lock = threading.RLock()
        #: Every call fails with RegistryUnavailable, as an unreachable tracking server does.
        self.outage = False

    # -- what training and registration do ------------------------------------------------

    def register(
        self,
        name: str,
        *,
        alias: str | None = "challenger",
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        inputs: list[dict[str, object]] | None = None,
        profile: DataProfile | None = None,
    ) -> int:
        """A new version of ``name`` from a new run (with ``metrics``, and ``profile`` as its
        reference data profile); ``alias`` moved to it; returns its number."""
        with self._lock:
            model = self._models.setdefault(name, _Model())
            number = max(model.versions, default=0) + 1
            run_id = f"{next(self._run_ids):032x}"
            self._runs[run_id] = RunSummary(
                run_id=run_id,
                url=f"{self.url}/#/experiments/1/runs/{run_id}",
                metrics=dict(metrics or {}),
            )
            if profile is not None:
                self._profiles[run_id] = profile
            uri = f"mlflow-artifacts:/1/models/m-{run_id}/artifacts"
            model.versions[number] = ModelVersion(
                name=name, version=number, run_id=run_id, source=f"models:/m-{run_id}",
                artifact_uri=uri, tags=dict(tags or {}),
            )  # fmt: skip
            model.inputs[number] = list(inputs or [])
            if alias is not None:
                model.aliases[alias] = number
            return number

    # -- reading --------------------------------------------------------------------------

    def _model(self, name: str) -> _Model:
        if self.outage:
            raise RegistryUnavailable(
                f"MLflow registry at {self.url} is unreachable; start it or set "
                "MLFLOW_TRACKING_URI to a running tracking server"
            )
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} not found in the registry at {self.url}")
        return model

    def _version(self, name: str, version: int) -> ModelVersion:
        found = self._model(name).versions.get(version)
        if found is None:
            raise ModelNotFound(
                f"version {version} of model {name!r} not found in the registry at {self.url}"
            )
        return found

    def resolve(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        if (version is None) == (alias is None):
            raise InputError("give exactly one of a version and an alias")
        with self._lock:
            if alias is not None:
                found = self.version_by_alias(name, alias)
                if found is None:
                    raise ModelNotFound(
                        f"model {name!r} has no alias {alias!r} in the registry at {self.url}"
                    )
                return found
            assert version is not None
            return self._with_aliases(self._version(name, version))

    def _with_aliases(self, version: ModelVersion) -> ModelVersion:
        aliases = self._models[version.name].aliases
        named = tuple(sorted(a for a, v in aliases.items() if v == version.version))
        return replace(version, aliases=named, tags=dict(version.tags))

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        with self._lock:
            if self.outage:
                self._model(name)  # raises RegistryUnavailable
            model = self._models.get(name)
            number = model.aliases.get(alias) if model else None
            return self._with_aliases(model.versions[number]) if model and number else None

    def run_summary(self, run_id: str) -> RunSummary:
        with self._lock:
            if self.outage:
                self._model("")
            summary = self._runs.get(run_id)
            if summary is None:
                raise ModelNotFound(f"run {run_id!r} not found in the registry at {self.url}")
            return summary

    def reference_profile(self, run_id: str) -> DataProfile | None:
        self.run_summary(run_id)
        return self._profiles.get(run_id)

    def version_url(self, name: str, version: int) -> str:
        return f"{self.url}/#/models/{name}/versions/{version}"

    def all_aliases(self) -> dict[str, dict[str, int]]:
        with self._lock:
            if self.outage:
                self._model("")
            return {name: dict(model.aliases) for name, model in self._models.items()}

    def aliases_of(self, models: Collection[str]) -> dict[str, dict[str, int]]:
        with self._lock:
            if self.outage:
                self._model("")
            found = {name: self._models.get(name) for name in models}
            return {name: dict(model.aliases) for name, model in found.items() if model}

    def input_rows(self, name: str, version: int, limit: int = 100) -> list[dict[str, object]]:
        with self._lock:
            self._version(name, version)
            return [dict(row) for row in self._models[name].inputs[version][:limit]]

    def registered_model_tags(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._model(name).tags)

    # -- writing --------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self._lock:
            self._version(name, version)
            self._models[name].aliases[alias] = version

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        with self._lock:
            found = self._version(name, version)
            merged = {**found.tags, **tags}
            self._models[name].versions[version] = replace(found, tags=merged)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        with self._lock:
            self._model(name).tags[key] = value


if TYPE_CHECKING:  # mypy holds the fake to every port it stands in for
    _ports: tuple[
        type[RolloutRegistry], type[ProposalRegistry], type[AliasIndex], type[ModelTagStore]
    ] = (MemoryRegistry, MemoryRegistry, MemoryRegistry, MemoryRegistry)
