"""KServe revisions on one machine: which predictor specs are revisions, and their servers.

On a cluster, every change of an InferenceService's predictor template makes Knative create a
revision ``<name>-predictor-0000K`` (even a revert to an older spec), while a change of
``canaryTrafficPercent`` alone only moves traffic. Here a revision is a record (name, spec
fingerprint, storage URI) plus a model server process, and :class:`ModelServers` maps each
process onto the three states the KServe status logic knows, applying Knative's progress
deadline: a revision that is still loading when it expires has failed.

In RawDeployment mode (:func:`plan_revisions`) KServe runs a Deployment for ``spec.predictor``
and one for the ``spec.canary`` entry, whose pod template is the primary's with the canary's
fields laid over it. Each pod template is a revision here too, named the same way so that
request metrics and queries look alike in both modes: a canary whose predictor becomes the
primary on promotion keeps its revision (and its server), as KServe keeps the canary's
Deployment; ``trafficPercent`` and replica counts only move traffic.

What the API server does with each rendered InferenceService is decided here too, one at a
time (:func:`admit`): a manifest KServe's webhook (or the CRD) refuses is not applied, and only
its own sync fails; a predictor without a ``storageUri`` is accepted, as KServe accepts it, and
its revision fails at once, as a model server with no model to load does (its message names the
fix, :func:`unpinned_message`), while the other InferenceServices of the commit run normally.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.errors import ManifestInvalid
from controller.local.kserve_status import PredictorSpec, Revision, RevisionState
from controller.local.serving.launcher import ModelServerHandle, start_model_server
from controller.manifests.deployment_mode import (
    DEFAULT_CONTAINER,
    DeploymentMode,
    canary_admission_errors,
    deployment_mode,
)

__all__ = [
    "Admission",
    "ModelServers",
    "PlannedPredictor",
    "RevisionPlan",
    "RevisionRecord",
    "admit",
    "pinned_storage_uri",
    "plan_revisions",
    "predictor_fingerprint",
    "predictor_spec",
    "storage_uri",
    "unpinned_message",
]

_log = logging.getLogger(__name__)
_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
# Written by `sluice init` and `sluice propose` (controller.manifests.manifest): the registered
# model.
_MODEL_NAME_ANNOTATION = "sluice.dev/model-name"
# Not part of a Deployment's pod template: changing them scales, it makes no new revision.
_SCALING_KEYS = (
    "canaryTrafficPercent", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
    "scaleMetricType", "autoScaling",
)  # fmt: skip


def _predictor(isvc: Mapping[str, Any]) -> dict[str, Any]:
    predictor = (isvc.get("spec") or {}).get("predictor")
    if not isinstance(predictor, dict):
        name = (isvc.get("metadata") or {}).get("name", "?")
        raise ManifestInvalid(f"InferenceService {name} has no spec.predictor; fix the manifest")
    return predictor


def predictor_fingerprint(isvc: Mapping[str, Any]) -> str:
    """A digest of ``spec.predictor`` without ``canaryTrafficPercent``: equal digests, one
    revision (KServe moves traffic for the percent alone, but revisions for anything else)."""
    template = copy.deepcopy(_predictor(isvc))
    template.pop("canaryTrafficPercent", None)
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def predictor_spec(isvc: Mapping[str, Any]) -> PredictorSpec:
    """The canary percent and the tag routing annotation, which decide the traffic."""
    percent = _predictor(isvc).get("canaryTrafficPercent")
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    tags = str(annotations.get(_TAG_ROUTING, "")).lower() == "true"
    return PredictorSpec(None if percent is None else int(percent), tags)


def pinned_storage_uri(isvc: Mapping[str, Any]) -> str:
    """``spec.predictor.model.storageUri`` (or the older ``spec.predictor.<framework>`` form);
    "" when the manifest pins no model yet."""
    predictor = _predictor(isvc)
    for key in ("model", *sorted(predictor)):
        part = predictor.get(key)
        if isinstance(part, dict) and part.get("storageUri"):
            return str(part["storageUri"])
    return ""


def storage_uri(isvc: Mapping[str, Any]) -> str:
    """:func:`pinned_storage_uri`, or :class:`ManifestInvalid` when there is none."""
    uri = pinned_storage_uri(isvc)
    if uri:
        return uri
    name = (isvc.get("metadata") or {}).get("name", "?")
    raise ManifestInvalid(
        f"InferenceService {name} has no spec.predictor.model.storageUri; "
        "pin a model version (sluice propose) before it can be served"
    )


def unpinned_message(isvc: Mapping[str, Any], env: str) -> str:
    """Why a revision with no ``storageUri`` cannot serve, and the command that pins one."""
    metadata = isvc.get("metadata") or {}
    name = str(metadata.get("name") or "?")
    model = str((metadata.get("annotations") or {}).get(_MODEL_NAME_ANNOTATION) or name)
    return (
        f"InferenceService {name} has no storageUri: propose a version "
        f"(sluice propose {model} --env {env})"
    )


@dataclass(frozen=True)
class PlannedPredictor:
    """A predictor the manifest asks KServe to run: its template's digest and its model."""

    fingerprint: str
    #: "" when the manifest pins no model: KServe runs it anyway, and it fails to load.
    storage_uri: str
    #: The ``spec.canary`` predictor's name; "" for ``spec.predictor``.
    canary: str = ""


@dataclass(frozen=True)
class RevisionPlan:
    """What an InferenceService manifest asks KServe to run, in its deployment mode.

    ``predictors`` has ``spec.predictor`` first, then (RawDeployment) the canary;
    ``traffic_percent`` is the canary's ``trafficPercent`` (None without a canary).
    """

    mode: DeploymentMode
    predictors: tuple[PlannedPredictor, ...]
    traffic_percent: int | None = None
    primary_name: str = ""

    @property
    def canary(self) -> PlannedPredictor | None:
        """The RawDeployment canary, if the manifest has one."""
        return self.predictors[1] if len(self.predictors) > 1 else None


def _overlay(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base``, mappings merged key by key (KServe's mergo.Merge of a
    canary predictor onto the primary: the canary's fields win, the rest are the primary's)."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _template_fingerprint(predictor: Mapping[str, Any]) -> str:
    """The pod template's digest, after KServe's defaulting of the model container's name."""
    template = {k: v for k, v in predictor.items() if k not in _SCALING_KEYS}
    if isinstance(template.get("model"), Mapping):
        template["model"] = {"name": DEFAULT_CONTAINER, **template["model"]}
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def plan_revisions(isvc: Mapping[str, Any]) -> RevisionPlan:
    """The predictors ``isvc`` runs; :class:`ManifestInvalid` if KServe would refuse it.

    A predictor without a ``storageUri`` is planned (with ``storage_uri`` "") and not refused:
    KServe's webhook accepts it, and only its model server fails.
    """
    name = (isvc.get("metadata") or {}).get("name", "?")
    refused = canary_admission_errors(isvc)
    if refused:
        raise ManifestInvalid(f"InferenceService {name}: {refused[0]}; fix the manifest")
    uri = pinned_storage_uri(isvc)
    if deployment_mode(isvc) == "Serverless":
        return RevisionPlan("Serverless", (PlannedPredictor(predictor_fingerprint(isvc), uri),))
    predictor = _predictor(isvc)
    primary = PlannedPredictor(_template_fingerprint(predictor), uri)
    primary_name = str(predictor.get("name") or "")
    canaries = (isvc.get("spec") or {}).get("canary") or []
    if not canaries:
        return RevisionPlan("RawDeployment", (primary,), primary_name=primary_name)
    if len(canaries) > 1:
        raise ManifestInvalid(
            f"InferenceService {name} has {len(canaries)} spec.canary entries; the local "
            "target runs one (as Sluice writes it)"
        )
    entry = canaries[0]
    merged = _overlay(predictor, entry.get("predictor") or {})
    canary = PlannedPredictor(
        _template_fingerprint(merged),
        pinned_storage_uri({"metadata": isvc.get("metadata"), "spec": {"predictor": merged}}),
        canary=str(merged["name"]),
    )
    percent = int(entry.get("trafficPercent") or 0)
    return RevisionPlan("RawDeployment", (primary, canary), percent, primary_name)


@dataclass(frozen=True)
class Admission:
    """One rendered InferenceService and what the API server made of it: its plan, or why it
    was refused (``refused``, one line naming it and the fix; ``plan`` is then None)."""

    document: dict[str, Any]
    plan: RevisionPlan | None
    refused: str = ""

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return str((self.document.get("metadata") or {}).get("name") or "?")

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (``default`` when the overlay sets none)."""
        return str((self.document.get("metadata") or {}).get("namespace") or "default")


def admit(documents: list[dict[str, Any]]) -> list[Admission]:
    """Each InferenceService of a sync on its own, as the API server takes one object at a
    time: a refused one does not keep the others from being applied."""
    admissions = []
    for document in documents:
        try:
            admissions.append(Admission(document, plan_revisions(document)))
        except ManifestInvalid as exc:
            admissions.append(Admission(document, None, exc.message))
    return admissions


@dataclass
class RevisionRecord:
    """A revision the runtime created; ``failure`` is set once it failed for good."""

    name: str
    fingerprint: str
    storage_uri: str
    created_at: str
    failure: str = ""
    exit_code: int | None = None
    was_ready: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as stored in the runtime's state file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RevisionRecord:
        """Read a record back from the state file."""
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class ModelServers:
    """One model server per revision, started without waiting, stopped when retired.

    ``log_root/<revision>`` holds each server's log and downloaded model. A server that was
    ready and then exited is restarted (Knative restarts a crashed container); one that never
    became ready, or outlived the progress deadline while loading, makes its revision failed.
    """

    def __init__(
        self,
        log_root: Path,
        *,
        env: Mapping[str, str],
        progress_deadline: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_root = log_root
        self.env = dict(env)
        self.progress_deadline = progress_deadline
        self._clock = clock
        self._handles: dict[str, ModelServerHandle] = {}
        self._started: dict[str, float] = {}

    def marker(self, revision: str) -> str:
        """What the server's command line contains, and nothing else's does."""
        return str(self.log_root / revision / "model")

    def observe(self, record: RevisionRecord, model_name: str) -> Revision:
        """The revision's state now, starting its server when it has none."""
        if record.failure:
            return Revision(record.name, RevisionState.FAILED, record.failure, record.exit_code)
        handle = self._handles.get(record.name)
        if handle is None:
            handle = self._start(record, model_name)
        state = handle.state()
        if state == "ready":
            if not record.was_ready:
                _log.info("%s ready after %.1fs", record.name, self._age(record.name))
            record.was_ready = True
            return Revision(record.name, RevisionState.READY)
        if state == "failed":
            if record.was_ready:
                _log.warning("%s exited after it was ready; restarting it", record.name)
                self.stop(record.name)
                return self.observe(record, model_name)
            record.failure = handle.failure_message()
            record.exit_code = handle.process.returncode
            self.stop(record.name)
        elif self._age(record.name) > self.progress_deadline:
            record.failure = (
                f"Initial scale was never achieved: not ready within the progress deadline "
                f"of {self.progress_deadline:g}s"
            )
            self.stop(record.name)
        else:
            return Revision(record.name, RevisionState.LOADING)
        _log.warning("%s failed: %s", record.name, record.failure)
        return Revision(record.name, RevisionState.FAILED, record.failure, record.exit_code)

    def url(self, revision: str) -> str | None:
        """Where the revision's server listens, if it has one."""
        handle = self._handles.get(revision)
        return handle.url if handle is not None else None

    def running(self) -> dict[str, dict[str, int]]:
        """Pid and port of every server, for the state file (so ``down`` can stop them)."""
        return {name: {"pid": h.pid, "port": h.port} for name, h in self._handles.items()}

    def stop(self, revision: str) -> None:
        """Stop one revision's server (nothing if it has none)."""
        handle = self._handles.pop(revision, None)
        self._started.pop(revision, None)
        if handle is not None:
            handle.stop()

    def stop_all(self) -> None:
        """Stop every server."""
        for revision in list(self._handles):
            self.stop(revision)

    def _start(self, record: RevisionRecord, model_name: str) -> ModelServerHandle:
        _log.info("starting %s from %s", record.name, record.storage_uri)
        handle = start_model_server(
            name=model_name,
            storage_uri=record.storage_uri,
            log_dir=self.log_root / record.name,
            env=self.env,
            wait=False,
        )
        self._handles[record.name] = handle
        self._started[record.name] = self._clock()
        return handle

    def _age(self, revision: str) -> float:
        return self._clock() - self._started.get(revision, self._clock())
