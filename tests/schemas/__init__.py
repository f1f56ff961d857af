"""Schemas the manifest tests validate rendered objects against, and the rendering itself.

Upstream CRDs are the ones vendored in ``tests/upstream`` (its SOURCES.md lists their commits and
SHA-256). Kinds without an upstream CRD and Kubernetes' built-in kinds use the handwritten
subsets in this directory (README.md here).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from support.crd import strict
from upstream.sources import UPSTREAM

from controller.manifests.render import render_overlay

__all__ = ["ROOT", "UPSTREAM", "render", "schema_errors"]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

_UPSTREAM_CRDS = {
    "InferenceService": "kserve/config/crd/full/serving.kserve.io_inferenceservices.yaml",
    "Application": "argo-cd/manifests/crds/application-crd.yaml",
    "ApplicationSet": "argo-cd/manifests/crds/applicationset-crd.yaml",
}
_LOCAL_SCHEMAS = {
    "AppProject": "appproject.json",
    "ClusterServingRuntime": "clusterservingruntime.json",
    "PodMonitor": "podmonitor.json",
    "ServiceMonitor": "servicemonitor.json",
    "PrometheusRule": "prometheusrule.json",
    "Deployment": "deployment.json",
    "Service": "service.json",
    "ServiceAccount": "serviceaccount.json",
    "ConfigMap": "configmap.json",
    "Namespace": "namespace.json",
    "ClusterRole": "clusterrole.json",
    "Role": "role.json",
    "RoleBinding": "rolebinding.json",
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@cache
def _crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    crd = yaml.load(
        (UPSTREAM / _UPSTREAM_CRDS[kind]).read_text(encoding="utf-8"),
        # The safe loader, in C when libyaml is there: the CRDs are megabytes.
        Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader),  # noqa: S506
    )
    version = api_version.rpartition("/")[2]
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in served, f"{kind} {api_version}: the CRD serves only {sorted(served)}"
    schema = strict(copy.deepcopy(served[version]["schema"]["openAPIV3Schema"]))
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    return jsonschema.Draft7Validator(schema)


@cache
def _local_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((HERE / _LOCAL_SCHEMAS[kind]).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Every way ``document`` breaks its kind's schema (an unknown kind is one error)."""
    kind = document.get("kind", "")
    name = (document.get("metadata") or {}).get("name", "")
    where = f"{kind} {name}"
    if kind in _UPSTREAM_CRDS:
        validator = _crd_validator(kind, document.get("apiVersion", ""))
    elif kind in _LOCAL_SCHEMAS:
        validator = _local_validator(kind)
    else:
        return [f"{where}: no schema for kind {kind!r} (add one to tests/schemas/)"]
    errors = [
        f"{where}: {'.'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    if not _NAME.match(name):
        errors.append(f"{where}: metadata.name is not a DNS-1123 name")
    return errors


@cache
def _rendered(directory: str) -> tuple[dict[str, Any], ...]:
    return tuple(render_overlay(ROOT / directory))


def render(directory: str) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY`` (relative to the repository), rendered once a session;
    each call returns its own copy."""
    return copy.deepcopy(list(_rendered(directory)))
