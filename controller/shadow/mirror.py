"""The Istio VirtualService that gives a challenger a copy of live traffic on a cluster.

Before the first canary step a challenger is judged on a mirrored copy of the primary's
requests (issue #8). The local router copies requests itself (:mod:`controller.local.mirror`);
on a cluster Sluice writes the copy into Git as an Istio ``VirtualService`` in the
environment's overlay, where Argo CD applies it, and removes it again with the first step or
the rollback (:mod:`controller.rollout.act` makes those commits). This module builds that
document, validates it, adds it to or removes it from an overlay, and reads it back.

What the document says (KServe Serverless with Istio as Knative's ingress):

- ``hosts``: the predictor's cluster-local name, ``<isvc>-predictor.<ns>.svc.cluster.local``,
  on Knative's local gateway (where KServe's top-level route sends every request) and on the
  mesh (sidecar clients calling the predictor directly).
- ``route``: 100 % to the primary revision's Service. Knative gives each revision
  ``<revision>.<ns>.svc.cluster.local`` on port 80; in front of it sits either the revision's
  pods or Knative's activator, and the activator finds the revision by the headers
  ``Knative-Serving-Namespace`` and ``Knative-Serving-Revision``, so the route sets them as
  Knative's own routes do.
- ``mirror``: the challenger's *private* Service, ``<revision>-private.<ns>.svc.cluster.local``
  port 80, which reaches its pods' queue-proxy without the activator. Envoy builds the copy
  from the request after the route's header changes, so it carries the primary's
  ``Knative-Serving-Revision``; through the activator the copy would be served by the primary.
  The private Service has endpoints only while the challenger has a pod: keep the predictor's
  ``minReplicas`` at 1 or more (KServe's default) during shadow evaluation.
- ``mirrorPercentage``: the share of requests copied. Istio does not wait for the copy and
  drops its answer; Envoy appends ``-shadow`` to the copy's Host header.
- ``metadata.annotations``: ``sluice.dev/phase: shadow`` and ``sluice.dev/challenger``, so a
  pass of the rollout loop reads the phase from Git, and a file Sluice did not write is never
  overwritten or deleted.

Not yet checked on a cluster: Knative's net-istio writes VirtualServices for the same host
(README.md, "Shadow traffic on a cluster", says what to confirm).

Validation is against a checked-in subset of Istio's CRD schema
(``schemas/istio-virtualservice-subset.json``, whose description says where it comes from).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError

from controller.errors import InputError, ManifestInvalid
from controller.manifests.kustomization_file import (
    KUSTOMIZATION_FILES,
    dump_yaml,
    load_kustomization,
    move_trailing_lines,
    parse_kustomization,
    round_trip_yaml,
)
from controller.manifests.schema_problem import first_schema_problem

# jsonschema (about 30 ms of CPU) loads on the first validation, not with every command that
# imports this module on its way elsewhere.
if TYPE_CHECKING:
    from jsonschema import Draft7Validator

__all__ = [
    "CHALLENGER_ANNOTATION",
    "DEFAULT_GATEWAYS",
    "KUSTOMIZATION_FILES",
    "PHASE_ANNOTATION",
    "REVISION_PORT",
    "SHADOW_FILE",
    "VIRTUALSERVICE_SCHEMA",
    "ShadowMirror",
    "mirror_name",
    "mirror_virtual_service",
    "parse_shadow_mirror",
    "predictor_host",
    "private_revision_host",
    "read_shadow_mirror",
    "remove_shadow_mirror",
    "revision_host",
    "validate_virtual_service",
    "write_shadow_mirror",
]

SHADOW_FILE = "shadow-virtualservice.yaml"
PHASE_ANNOTATION = "sluice.dev/phase"
CHALLENGER_ANNOTATION = "sluice.dev/challenger"
VIRTUALSERVICE_SCHEMA = Path(__file__).parents[1] / "schemas" / "istio-virtualservice-subset.json"
#: Knative's local gateway (KServe's top-level route forwards to it) and the sidecars.
DEFAULT_GATEWAYS = ("knative-serving/knative-local-gateway", "mesh")
#: The HTTP/1 port of a Knative revision's Services (public and private).
REVISION_PORT = 80

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_MAX = 63
_PRIVATE_SUFFIX = "-private"
_HEADER = (
    "# Shadow evaluation: a copy of the primary's traffic for the challenger, written by Sluice\n"
    "# and removed by it before the first canary step. Do not edit; see README.md,\n"
    '# "Shadow traffic on a cluster".\n'
)


@dataclass(frozen=True)
class ShadowMirror:
    """What an overlay's shadow VirtualService says: who gets the copy, and how much of it."""

    challenger: str
    percent: float


def _check_label(value: str, what: str, *, max_length: int = _LABEL_MAX) -> None:
    if not isinstance(value, str) or not _DNS1123_LABEL.fullmatch(value):
        raise InputError(
            f"{what} {value!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if len(value) > max_length:
        raise InputError(f"{what} {value!r} is longer than {max_length} characters: shorten it")


def _check_percent(percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise InputError(f"mirror percent {percent!r} is not a number: give one in (0, 100]")
    if not math.isfinite(percent) or not 0 < percent <= 100:
        raise InputError(f"mirror percent {percent} is outside (0, 100]: give one in (0, 100]")
    return float(percent)


def revision_host(revision: str, namespace: str) -> str:
    """The cluster-local name of a Knative revision's Service (activator or pods behind it)."""
    return f"{revision}.{namespace}.svc.cluster.local"


def private_revision_host(revision: str, namespace: str) -> str:
    """The cluster-local name of a revision's private Service (its pods, never the activator)."""
    return f"{revision}{_PRIVATE_SUFFIX}.{namespace}.svc.cluster.local"


def mirror_name(isvc_name: str) -> str:
    """The VirtualService's name: one mirror per InferenceService."""
    return f"{isvc_name}-shadow"


def predictor_host(isvc_name: str, namespace: str) -> str:
    """The cluster-local name of an InferenceService's predictor (Knative's route)."""
    return f"{isvc_name}-predictor.{namespace}.svc.cluster.local"


def mirror_virtual_service(
    isvc_name: str,
    namespace: str,
    primary_revision: str,
    shadow_revision: str,
    percent: float,
    *,
    gateways: Sequence[str] = DEFAULT_GATEWAYS,
) -> dict[str, Any]:
    """The VirtualService that sends the predictor's traffic to ``primary_revision`` and a copy
    of ``percent`` % of it to ``shadow_revision``; :class:`InputError` on a bad argument."""
    _check_label(isvc_name, "InferenceService name")
    _check_label(namespace, "namespace")
    for revision, role in ((primary_revision, "primary"), (shadow_revision, "challenger")):
        # Its private Service's name is a DNS-1035 label too, so the suffix must fit.
        _check_label(revision, f"{role} revision", max_length=_LABEL_MAX - len(_PRIVATE_SUFFIX))
        if not revision.startswith(f"{isvc_name}-predictor-"):
            raise InputError(
                f"{role} revision {revision!r} is not a revision of {isvc_name}'s predictor "
                f"(KServe names them {isvc_name}-predictor-NNNNN): pass one of its revisions"
            )
    if primary_revision == shadow_revision:
        raise InputError(
            f"revision {primary_revision!r} is both primary and challenger: "
            "mirror to the challenger's own revision"
        )
    value = _check_percent(percent)
    if not gateways:
        raise InputError("no gateway for the shadow VirtualService: name at least one")
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": mirror_name(isvc_name),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "sluice"},
            "annotations": {PHASE_ANNOTATION: "shadow", CHALLENGER_ANNOTATION: shadow_revision},
        },
        "spec": {
            "hosts": [predictor_host(isvc_name, namespace)],
            "gateways": list(gateways),
            "http": [
                {
                    "name": "shadow",
                    "route": [
                        {
                            "destination": {
                                "host": revision_host(primary_revision, namespace),
                                "port": {"number": REVISION_PORT},
                            },
                            "weight": 100,
                            "headers": {
                                "request": {
                                    "set": {
                                        "Knative-Serving-Namespace": namespace,
                                        "Knative-Serving-Revision": primary_revision,
                                    }
                                }
                            },
                        }
                    ],
                    "mirror": {
                        "host": private_revision_host(shadow_revision, namespace),
                        "port": {"number": REVISION_PORT},
                    },
                    "mirrorPercentage": {"value": value},
                }
            ],
        },
    }


@cache
def _validator() -> Draft7Validator:
    from jsonschema import Draft7Validator  # on first use: see the imports

    return Draft7Validator(json.loads(VIRTUALSERVICE_SCHEMA.read_text(encoding="utf-8")))


def validate_virtual_service(
    document: Mapping[str, Any], *, source: str = "VirtualService"
) -> None:
    """Check a VirtualService against the checked-in subset of Istio's schema; the first error,
    in one line, as :class:`ManifestInvalid`."""
    problem = first_schema_problem(_validator(), document)
    if problem is not None:
        raise ManifestInvalid(
            f"{source}: {problem.line('VirtualService')}; fix the document "
            f"(the schema is the subset in {VIRTUALSERVICE_SCHEMA.name})"
        )


# -- the overlay: the file and its entry in kustomization.yaml ----------------------------------


def _render(document: Mapping[str, Any]) -> str:
    return _HEADER + dump_yaml(round_trip_yaml(), document)


def _is_ours(text: str) -> bool:
    try:
        document = YAML(typ="safe").load(text)
    except YAMLError:
        return False
    annotations = ((document or {}).get("metadata") or {}).get("annotations") or {}
    return isinstance(annotations, dict) and annotations.get(PHASE_ANNOTATION) == "shadow"


def _check_ours(path: Path) -> None:
    if not _is_ours(path.read_text(encoding="utf-8")):
        raise ManifestInvalid(
            f"{path}: exists but is not Sluice's shadow VirtualService (no {PHASE_ANNOTATION}: "
            "shadow annotation); rename or remove it"
        )


def write_shadow_mirror(overlay: Path, document: Mapping[str, Any]) -> bool:
    """Write ``document`` to ``OVERLAY/shadow-virtualservice.yaml`` and list it in the overlay's
    ``resources``; True if a file changed. Comments and order of the kustomization are kept."""
    path = overlay / SHADOW_FILE
    validate_virtual_service(document, source=str(path))
    kustomization = load_kustomization(overlay)
    expected = kustomization.document.get("namespace")
    namespace = (document.get("metadata") or {}).get("namespace")
    if expected is not None and namespace != expected:
        raise InputError(
            f"shadow VirtualService is for namespace {namespace!r}, but {kustomization.path} "
            f"deploys to {expected!r}: build it for {expected!r}"
        )
    changed = False
    text = _render(document)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        if path.exists():
            _check_ours(path)
        # The file first: a crash before the next line leaves it unlisted, never listed and
        # missing, and the next pass lists it.
        path.write_text(text, encoding="utf-8")
        changed = True
    resources = kustomization.document.get("resources")
    if resources is None:
        resources = CommentedSeq()
        kustomization.document["resources"] = resources
    if SHADOW_FILE not in resources:
        resources.append(SHADOW_FILE)
        if len(resources) > 1:
            move_trailing_lines(resources, len(resources) - 2, len(resources) - 1)
        kustomization.save()
        changed = True
    return changed


def remove_shadow_mirror(overlay: Path) -> bool:
    """Unlist and delete ``OVERLAY/shadow-virtualservice.yaml``; True if a file changed. After
    :func:`write_shadow_mirror` the overlay is byte for byte what it was before."""
    path = overlay / SHADOW_FILE
    if path.exists():
        _check_ours(path)
    kustomization = load_kustomization(overlay)
    changed = False
    resources = kustomization.document.get("resources")
    if resources is not None and SHADOW_FILE in resources:
        index = resources.index(SHADOW_FILE)
        if index == len(resources) - 1 and index > 0:
            move_trailing_lines(resources, index, index - 1)
        del resources[index]
        if not resources:
            del kustomization.document["resources"]
        kustomization.save()
        changed = True
    # The listing first: a crash before the next line leaves an unlisted file, never a listed
    # file that is missing (which kustomize refuses to render).
    if path.exists():
        path.unlink()
        changed = True
    return changed


def read_shadow_mirror(overlay: Path) -> ShadowMirror | None:
    """The overlay's shadow VirtualService, if it has one listed (None: no shadow phase)."""
    path = overlay / SHADOW_FILE
    resources = load_kustomization(overlay).document.get("resources") or []
    if SHADOW_FILE not in resources or not path.exists():
        return None
    return _mirror_of(path.read_text(encoding="utf-8"), str(path))


def parse_shadow_mirror(
    kustomization: str, virtual_service: str | None, *, overlay: str
) -> ShadowMirror | None:
    """:func:`read_shadow_mirror` over file contents (as read from a Git revision): the texts of
    the overlay's kustomization and of its ``shadow-virtualservice.yaml`` (None if absent).
    ``overlay`` names the overlay in error messages."""
    document, _ = parse_kustomization(kustomization, f"{overlay} (kustomization)")
    if SHADOW_FILE not in (document.get("resources") or []) or virtual_service is None:
        return None
    return _mirror_of(virtual_service, f"{overlay}/{SHADOW_FILE}")


def _mirror_of(text: str, path: str) -> ShadowMirror:
    try:
        document = YAML(typ="safe").load(text)
    except YAMLError:
        raise ManifestInvalid(f"{path}: malformed YAML; fix or remove the file") from None
    if not isinstance(document, dict):
        raise ManifestInvalid(f"{path}: not a VirtualService; fix or remove the file")
    validate_virtual_service(document, source=path)
    annotations = document["metadata"].get("annotations") or {}
    challenger = annotations.get(CHALLENGER_ANNOTATION)
    routes = document["spec"]["http"]
    percent = (routes[0].get("mirrorPercentage") or {}).get("value")
    if annotations.get(PHASE_ANNOTATION) != "shadow" or not challenger or percent is None:
        raise ManifestInvalid(
            f"{path}: not Sluice's shadow VirtualService (needs {PHASE_ANNOTATION}: shadow, "
            f"{CHALLENGER_ANNOTATION} and a mirrorPercentage); fix or remove the file"
        )
    return ShadowMirror(challenger=str(challenger), percent=float(percent))
