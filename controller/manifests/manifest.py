"""Edit a model pin (an overlay's InferenceService patch) the way a person would.

The pin is a reviewed file: its comments, key order and quoting must survive, and a pull
request must change exactly the lines that move the version. ruamel.yaml's round trip keeps
all of that; the width is raised so a long ``storageUri`` is never folded onto two lines.

A pin canaries the way its KServe mode does (:mod:`controller.manifests.deployment_mode`):

- **Serverless**: ``spec.predictor.canaryTrafficPercent`` beside the candidate's ``storageUri``
  (KServe remembers which revision served before). These pins are read and written exactly as
  they always were.
- **RawDeployment**: ``spec.predictor`` keeps the version that serves (the primary) and the
  candidate is ``spec.canary: [{trafficPercent: N, predictor: {name: vK, model: {name,
  modelFormat, storageUri}}}]`` (the CRD requires the canary's container ``name`` and
  ``modelFormat``), so Git names both versions that take traffic. The ``sluice.dev/*``
  annotations name the candidate, as in Serverless, and ``previous-version`` the primary.
  Sluice writes the annotation ``serving.kserve.io/deploymentMode: RawDeployment`` into such
  pins, so every pin it wrote says its mode, and it owns the whole ``spec.canary`` list (one
  entry). The canary's ``name`` is ``v<version>``: KServe names the canary's Deployment after
  it and, on promotion, keeps that Deployment as the primary without restarting it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from controller.errors import ManifestInvalid
from controller.limits import PIN_FILE_MAX_BYTES
from controller.manifests.deployment_mode import (
    DEFAULT_CONTAINER,
    DEPLOYMENT_MODE_ANNOTATION,
    RAW_DEPLOYMENT_MODES,
    DeploymentMode,
    deployment_mode,
)
from controller.shadow.phase import (
    MIRROR_PERCENT_ANNOTATION,
    PHASE_ANNOTATION,
    SHADOW_PHASE,
    SMOKE_PHASE,
)
from controller.yaml_config import check_yaml_text

__all__ = [
    "ANNOTATION_PREFIX",
    "PinnedRelease",
    "ReleasePin",
    "apply_release",
    "canary_entry",
    "canary_name",
    "dump_pin",
    "load_pin",
    "read_release",
    "remove_canary",
    "set_annotations",
    "set_shadow_annotations",
    "set_smoke_annotation",
]

ANNOTATION_PREFIX = "sluice.dev/"


@dataclass(frozen=True)
class PinnedRelease:
    """What a pin says serves: version, storage, canary weight (None: not canarying).

    ``storage_uri`` is the pinned version's (in RawDeployment mode the canary's while one
    exists); ``primary_storage_uri`` is what ``spec.predictor`` itself names, the same except
    while a RawDeployment canary exists. ``mode`` is the pin's KServe deployment mode.
    """

    model: str | None
    version: int | None
    storage_uri: str | None
    run_id: str | None
    previous_version: int | None
    canary_percent: int | None
    primary_storage_uri: str | None = None
    mode: DeploymentMode = "Serverless"


@dataclass(frozen=True)
class ReleasePin:
    """The values :func:`apply_release` writes."""

    model: str
    version: int
    storage_uri: str
    run_id: str | None
    previous_version: int | None
    canary_percent: int | None


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_pin(text: str, *, source: str) -> CommentedMap:
    """Parse a pin file, keeping comments; :class:`ManifestInvalid` if it is not one, is over
    :data:`~controller.limits.PIN_FILE_MAX_BYTES` or uses YAML anchors or aliases."""
    check_yaml_text(
        text, label=source, limit=PIN_FILE_MAX_BYTES, kind="pin file", error=ManifestInvalid
    )
    try:
        document = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestInvalid(f"{source}: malformed YAML{where}; fix the syntax") from None
    if not isinstance(document, CommentedMap) or document.get("kind") != "InferenceService":
        raise ManifestInvalid(f"{source}: not an InferenceService manifest")
    return document


def _mapping(parent: CommentedMap, key: str, source: str) -> CommentedMap:
    value = parent.get(key)
    if value is None:
        value = CommentedMap()
        parent[key] = value
    if not isinstance(value, CommentedMap):
        raise ManifestInvalid(f"{source}: {key} must be a mapping")
    return value


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def canary_entry(document: CommentedMap) -> CommentedMap | None:
    """The first ``spec.canary`` entry of a RawDeployment pin (None: no canary)."""
    return _first_canary(document.get("spec") or {})


def _first_canary(spec: Mapping[str, Any]) -> CommentedMap | None:
    canaries = spec.get("canary")
    if isinstance(canaries, list) and canaries and isinstance(canaries[0], CommentedMap):
        return canaries[0]
    return None


def canary_name(version: int, primary_name: object = None) -> str:
    """``v<version>``, the canary predictor's name (its Deployment is named after it); with a
    suffix when the primary already has that name (a version proposed again)."""
    name = f"v{version}"
    return f"{name}-canary" if name == primary_name else name


def read_release(document: CommentedMap) -> PinnedRelease:
    """What the pin currently says."""
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    predictor = (document.get("spec") or {}).get("predictor") or {}
    primary_uri = (predictor.get("model") or {}).get("storageUri")
    mode = deployment_mode(document)
    storage_uri, percent = primary_uri, _int_or_none(predictor.get("canaryTrafficPercent"))
    if mode == "RawDeployment":
        canary = canary_entry(document)
        storage_uri, percent = primary_uri, None
        if canary is not None:
            model = (canary.get("predictor") or {}).get("model") or {}
            storage_uri = model.get("storageUri")
            percent = _int_or_none(canary.get("trafficPercent"))
    return PinnedRelease(
        model=annotations.get(f"{ANNOTATION_PREFIX}model-name"),
        version=_int_or_none(annotations.get(f"{ANNOTATION_PREFIX}model-version")),
        storage_uri=storage_uri,
        run_id=annotations.get(f"{ANNOTATION_PREFIX}run-id"),
        previous_version=_int_or_none(annotations.get(f"{ANNOTATION_PREFIX}previous-version")),
        canary_percent=percent,
        primary_storage_uri=primary_uri,
        mode=mode,
    )


def apply_release(
    document: CommentedMap,
    pin: ReleasePin,
    *,
    source: str,
    mode: DeploymentMode | None = None,
) -> None:
    """Write ``pin`` into the document in place, touching only the keys it owns.

    ``mode`` is the environment's ``deploymentMode``; None takes the pin's own
    (:func:`~controller.manifests.deployment_mode.deployment_mode`).
    """
    metadata = _mapping(document, "metadata", source)
    annotations = _mapping(metadata, "annotations", source)
    annotations[f"{ANNOTATION_PREFIX}model-name"] = pin.model
    # Annotations are strings; quote numbers the way Kubernetes manifests usually do.
    annotations[f"{ANNOTATION_PREFIX}model-version"] = DoubleQuotedScalarString(str(pin.version))
    _set_or_remove(annotations, f"{ANNOTATION_PREFIX}run-id", pin.run_id)
    previous = (
        DoubleQuotedScalarString(str(pin.previous_version))
        if pin.previous_version is not None
        else None
    )
    _set_or_remove(annotations, f"{ANNOTATION_PREFIX}previous-version", previous)
    spec = _mapping(document, "spec", source)
    predictor = _mapping(spec, "predictor", source)
    if (mode or deployment_mode(document)) == "RawDeployment":
        _apply_raw(annotations, spec, predictor, pin, source)
        return
    if pin.canary_percent is None:
        predictor.pop("canaryTrafficPercent", None)
    elif "canaryTrafficPercent" in predictor:
        predictor["canaryTrafficPercent"] = pin.canary_percent
    else:
        # KServe's examples put the canary weight first in the predictor: keep it visible.
        predictor.insert(0, "canaryTrafficPercent", pin.canary_percent)
    _mapping(predictor, "model", source)["storageUri"] = pin.storage_uri


def _apply_raw(
    annotations: CommentedMap,
    spec: CommentedMap,
    predictor: CommentedMap,
    pin: ReleasePin,
    source: str,
) -> None:
    """RawDeployment: a canary is a second predictor; without one the primary is the pin."""
    if annotations.get(DEPLOYMENT_MODE_ANNOTATION) not in RAW_DEPLOYMENT_MODES:
        # The base may say Serverless; KServe refuses spec.canary unless the pin overrides it.
        annotations[DEPLOYMENT_MODE_ANNOTATION] = "RawDeployment"
    predictor.pop("canaryTrafficPercent", None)  # ignored in this mode, refused beside canary
    primary_model = _mapping(predictor, "model", source)
    if pin.canary_percent is None:
        remove_canary(spec)
        primary_model["storageUri"] = pin.storage_uri
        return
    entry, closing = _first_canary(spec), None
    if entry is None:
        closing = _last_leaf(spec)  # where a comment that closed the file hangs
        entry = CommentedMap()
        spec["canary"] = CommentedSeq([entry])
    del spec["canary"][1:]  # Sluice runs one canary
    entry["trafficPercent"] = pin.canary_percent
    canary = _mapping(entry, "predictor", source)
    name = canary_name(pin.version, predictor.get("name"))
    if "name" in canary:
        canary["name"] = name
    else:
        canary.insert(0, "name", name)
    model = _mapping(canary, "model", source)
    if "modelFormat" not in model and "modelFormat" in primary_model:
        model.insert(0, "modelFormat", _copy(primary_model["modelFormat"]))
    if "name" not in model:
        # The CRD requires the canary's container name (not the primary's); KServe's default.
        model.insert(0, "name", primary_model.get("name") or DEFAULT_CONTAINER)
    model["storageUri"] = pin.storage_uri
    _move_tail_comment(closing, _last_leaf(spec["canary"]))


def remove_canary(spec: CommentedMap) -> None:
    """Remove ``spec.canary``, keeping the comment lines that closed the file after it."""
    if "canary" not in spec:
        return
    was_last = list(spec)[-1] == "canary"
    canary = spec.pop("canary")
    if was_last:
        _move_tail_comment(_last_leaf(canary), _last_leaf(spec))


_Leaf = tuple[CommentedMap | CommentedSeq, Any]


def _last_leaf(node: Any) -> _Leaf | None:
    """The container and key (or index) of the last scalar of a YAML tree."""
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        child = node[key]
        if not (isinstance(child, CommentedMap | CommentedSeq) and len(child)):
            return node, key
        node = child
    return None


def _move_tail_comment(source: _Leaf | None, target: _Leaf | None) -> None:
    """Move the lines after ``source``'s end-of-line comment to after ``target``'s value.

    ruamel.yaml attaches a file's closing comment to the last value before it, so a key added
    after that value would otherwise print below the closing comment, and a removed one would
    take it along.
    """
    if source is None or target is None:
        return
    container, key = source
    comments = container.ca.items.get(key) or []
    slot = 0 if isinstance(container, CommentedSeq) else 2
    token = comments[slot] if len(comments) > slot else None
    if not isinstance(token, CommentToken) or "\n" not in token.value:
        return
    head, tail = token.value.split("\n", 1)
    if not tail:
        return
    token.value = head + "\n"
    into, at = target
    slot = 0 if isinstance(into, CommentedSeq) else 2
    existing = into.ca.items.setdefault(at, [None, None, None, None])
    if isinstance(existing[slot], CommentToken):
        existing[slot].value += tail
    else:
        existing[slot] = CommentToken("\n" + tail, CommentMark(0))


def _copy(value: Any) -> Any:
    """A copy of YAML data without its comments (they belong where the data came from)."""
    if isinstance(value, dict):
        return CommentedMap((key, _copy(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_copy(item) for item in value)
    return value


def _set_or_remove(mapping: CommentedMap, key: str, value: str | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def set_shadow_annotations(document: CommentedMap, percent: float | None) -> None:
    """Mark the pin as in its shadow phase mirroring ``percent`` % (None: clear the marks)."""
    metadata = document.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, CommentedMap) else None
    if percent is None:
        if isinstance(annotations, CommentedMap):
            annotations.pop(PHASE_ANNOTATION, None)
            annotations.pop(MIRROR_PERCENT_ANNOTATION, None)
        return
    annotations = _mapping(_mapping(document, "metadata", "pin"), "annotations", "pin")
    annotations[PHASE_ANNOTATION] = SHADOW_PHASE
    annotations[MIRROR_PERCENT_ANNOTATION] = DoubleQuotedScalarString(f"{percent:g}")


def set_annotations(document: CommentedMap, values: Mapping[str, str | None]) -> None:
    """Set each annotation to its value, or remove it where the value is None (the version's
    provenance annotations, which an older version's pin may still carry)."""
    if all(value is None for value in values.values()):
        metadata = document.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, CommentedMap) else None
        if isinstance(annotations, CommentedMap):
            for key in values:
                annotations.pop(key, None)
        return
    annotations = _mapping(_mapping(document, "metadata", "pin"), "annotations", "pin")
    for key, value in values.items():
        _set_or_remove(annotations, key, None if value is None else DoubleQuotedScalarString(value))


def set_smoke_annotation(document: CommentedMap) -> None:
    """Mark the pin (at weight 0) as in its pre-traffic smoke phase; any weight edit clears it
    with :func:`set_shadow_annotations` (the phase annotation is one)."""
    annotations = _mapping(_mapping(document, "metadata", "pin"), "annotations", "pin")
    annotations[PHASE_ANNOTATION] = SMOKE_PHASE


def dump_pin(document: CommentedMap) -> str:
    """Serialise a pin with its comments, order and quoting."""
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    return buffer.getvalue()
