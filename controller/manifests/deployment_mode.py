"""KServe's two ways to canary, how a manifest says which one it uses, and what KServe refuses.

Why a module of its own: the pin editor (:mod:`controller.manifests.manifest`), the render check
(:mod:`controller.manifests.render`) and the local target (:mod:`controller.local`) must agree on
the mode of an InferenceService and on what KServe's admission webhook would refuse, or Sluice
would commit a pin that the cluster rejects in the middle of a sync.

- **Serverless** (Knative): one ``spec.predictor``; ``canaryTrafficPercent: N`` sends N % to
  the latest revision and the rest to the previous rolled-out one.
- **RawDeployment** (``Standard`` is its newer name; KServe 0.20's ``spec.canary[]``, because
  RawDeployment ignores ``canaryTrafficPercent``, kserve#5335): ``spec.predictor`` is the
  primary Deployment and each ``spec.canary`` entry, ``{trafficPercent: N, predictor: {name,
  ...}}``, runs a Deployment ``<isvc>-<name>-predictor`` of its own that takes N % of requests.

The admission rules below are those of KServe's validation webhook for ``spec.canary``
(kserve/kserve#5672, 0.20) that the CRD schema cannot express. Assumptions where the upstream
documentation is silent: "no autoscaling fields" means ``autoScaling``, ``scaleMetric``,
``scaleMetricType`` and ``scaleTarget``; a canary may not reuse the primary's ``name`` (the two
Deployments would have one name); without the mode annotation the cluster's default mode
applies, which may be RawDeployment, so only an explicit Serverless annotation is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "DEFAULT_CONTAINER",
    "DEPLOYMENT_MODE_ANNOTATION",
    "LOCAL_REVISIONS_ANNOTATION",
    "RAW_DEPLOYMENT_MODES",
    "DeploymentMode",
    "canary_admission_errors",
    "canary_deployment_name",
    "deployment_mode",
]

DeploymentMode = Literal["Serverless", "RawDeployment"]

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
#: The name KServe gives a predictor's model container when the spec names none.
DEFAULT_CONTAINER = "kserve-container"
#: Set in ``status.annotations`` by the local target's RawDeployment emulation
#: (:mod:`controller.local.raw_status`), whose ``components.predictor`` carries the local
#: revisions in Knative's fields; on a cluster those fields are empty in RawDeployment mode and
#: the cluster target reads the Deployments from spec and ``canaryStatuses`` instead.
LOCAL_REVISIONS_ANNOTATION = "sluice.dev/local-revisions"
#: The annotation values that mean RawDeployment (``Standard`` is KServe 0.15's new name).
RAW_DEPLOYMENT_MODES = frozenset({"RawDeployment", "Standard"})
# Kubernetes names (a Deployment, its Service) are DNS labels.
_NAME_LIMIT = 63
_AUTOSCALING_FIELDS = ("autoScaling", "scaleMetric", "scaleMetricType", "scaleTarget")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def deployment_mode(document: Mapping[str, Any]) -> DeploymentMode:
    """RawDeployment when the manifest has ``spec.canary`` or its mode annotation says so."""
    spec = _mapping(document.get("spec"))
    if "canary" in spec:
        return "RawDeployment"
    annotations = _mapping(_mapping(document.get("metadata")).get("annotations"))
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    return "RawDeployment" if mode in RAW_DEPLOYMENT_MODES else "Serverless"


def canary_deployment_name(inference_service: str, canary: str) -> str:
    """The Deployment (and Service) KServe runs a canary predictor as."""
    return f"{inference_service}-{canary}-predictor"


def canary_admission_errors(document: Mapping[str, Any]) -> list[str]:
    """Every way ``spec.canary`` breaks KServe's admission rules (empty: it passes them)."""
    spec = _mapping(document.get("spec"))
    canaries = spec.get("canary")
    if not isinstance(canaries, list):
        return []  # absent, or a type error the CRD schema reports
    metadata = _mapping(document.get("metadata"))
    mode = _mapping(metadata.get("annotations")).get(DEPLOYMENT_MODE_ANNOTATION)
    errors: list[str] = []
    if canaries and mode is not None and mode not in RAW_DEPLOYMENT_MODES:
        errors.append(
            f"spec.canary needs RawDeployment mode, but {DEPLOYMENT_MODE_ANNOTATION} is {mode!r}"
        )
    predictor = _mapping(spec.get("predictor"))
    if canaries and "canaryTrafficPercent" in predictor:
        errors.append("spec.canary and spec.predictor.canaryTrafficPercent exclude each other")
    seen: set[str] = set()
    total = 0
    for index, entry in enumerate(canaries):
        where = f"spec.canary[{index}]"
        canary = _mapping(_mapping(entry).get("predictor"))
        errors += _name_errors(where, canary.get("name"), seen, predictor.get("name"), metadata)
        errors += [
            f"{where}.predictor.{field} is not allowed on a canary"
            for field in ("canaryTrafficPercent", *_AUTOSCALING_FIELDS)
            if field in canary
        ]
        percent = _mapping(entry).get("trafficPercent")
        total += percent if isinstance(percent, int) else 0
    if total > 100:
        errors.append(f"the canaries' trafficPercent add up to {total}, more than 100")
    return errors


def _name_errors(
    where: str, name: Any, seen: set[str], primary: Any, metadata: Mapping[str, Any]
) -> list[str]:
    if not name:
        return [f"{where}.predictor.name is required: it names the canary's Deployment"]
    name = str(name)
    if name in seen:
        return [f"{where}.predictor.name {name!r} is used by another canary"]
    seen.add(name)
    if name == primary:
        return [f"{where}.predictor.name {name!r} is the primary predictor's name"]
    deployment = canary_deployment_name(str(metadata.get("name") or ""), name)
    if len(deployment) > _NAME_LIMIT:
        return [f"{where}: the Deployment name {deployment!r} is longer than {_NAME_LIMIT}"]
    return []
