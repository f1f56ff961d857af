"""Edit a model pin (an overlay's InferenceService patch) the way a person would.

The pin is a reviewed file: its comments, key order and quoting must survive, and a pull
request must change exactly the lines that move the version. ruamel.yaml's round trip keeps
all of that; the width is raised so a long ``storageUri`` is never folded onto two lines.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from controller.errors import ManifestInvalid

__all__ = [
    "ANNOTATION_PREFIX",
    "PinnedRelease",
    "ReleasePin",
    "apply_release",
    "dump_pin",
    "load_pin",
    "read_release",
]

ANNOTATION_PREFIX = "sluice.dev/"


@dataclass(frozen=True)
class PinnedRelease:
    """What a pin says serves: version, storage, canary weight (None: not canarying)."""

    model: str | None
    version: int | None
    storage_uri: str | None
    run_id: str | None
    previous_version: int | None
    canary_percent: int | None


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
    """Parse a pin file, keeping comments; :class:`ManifestInvalid` if it is not one."""
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


def read_release(document: CommentedMap) -> PinnedRelease:
    """What the pin currently says."""
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    predictor = (document.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    return PinnedRelease(
        model=annotations.get(f"{ANNOTATION_PREFIX}model-name"),
        version=_int_or_none(annotations.get(f"{ANNOTATION_PREFIX}model-version")),
        storage_uri=model.get("storageUri"),
        run_id=annotations.get(f"{ANNOTATION_PREFIX}run-id"),
        previous_version=_int_or_none(annotations.get(f"{ANNOTATION_PREFIX}previous-version")),
        canary_percent=_int_or_none(predictor.get("canaryTrafficPercent")),
    )


def apply_release(document: CommentedMap, pin: ReleasePin, *, source: str) -> None:
    """Write ``pin`` into the document in place, touching only the keys it owns."""
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
    predictor = _mapping(_mapping(document, "spec", source), "predictor", source)
    if pin.canary_percent is None:
        predictor.pop("canaryTrafficPercent", None)
    elif "canaryTrafficPercent" in predictor:
        predictor["canaryTrafficPercent"] = pin.canary_percent
    else:
        # KServe's examples put the canary weight first in the predictor: keep it visible.
        predictor.insert(0, "canaryTrafficPercent", pin.canary_percent)
    _mapping(predictor, "model", source)["storageUri"] = pin.storage_uri


def _set_or_remove(mapping: CommentedMap, key: str, value: str | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def dump_pin(document: CommentedMap) -> str:
    """Serialise a pin with its comments, order and quoting."""
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    return buffer.getvalue()
