"""Upstream schemas Sluice validates manifests against before anything is committed.

KServe's InferenceService CRD is 2 MB of YAML; the package carries only its
``openAPIV3Schema`` as compact JSON without descriptions (what validation needs), extracted by
:func:`extract_openapi_schema`, and the same for KServe's InferenceGraph CRD. Refresh either
from a newer CRD with ``python -m controller.schemas PATH/TO/CRD.yaml`` (the CRD's kind picks
the file). Source and licence: ``NOTICE`` beside this file.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# The CRD is 2 MB: libyaml's safe loader reads it about four times faster than the pure-Python
# one. PyYAML, not ruamel.yaml: ruamel's C parser is an extra Sluice does not install.
try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader

__all__ = [
    "INFERENCEGRAPH_SCHEMA",
    "INFERENCESERVICE_SCHEMA",
    "extract_openapi_schema",
    "inferencegraph_schema",
    "inferenceservice_schema",
    "main",
]

INFERENCESERVICE_SCHEMA = Path(__file__).with_name("inferenceservice-v1beta1.json")
INFERENCEGRAPH_SCHEMA = Path(__file__).with_name("inferencegraph-v1alpha1.json")
#: The packaged schema of each CRD kind, and the served version it is extracted from.
_PACKAGED = {
    "InferenceService": (INFERENCESERVICE_SCHEMA, "v1beta1"),
    "InferenceGraph": (INFERENCEGRAPH_SCHEMA, "v1alpha1"),
}


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_descriptions(value) for key, value in node.items() if key != "description"
        }
    if isinstance(node, list):
        return [_without_descriptions(item) for item in node]
    return node


def _load_crd(crd_path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(crd_path.read_text(encoding="utf-8"), Loader=SafeLoader)
    return crd


def extract_openapi_schema(crd_path: Path, version: str = "v1beta1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version of a CRD, without descriptions."""
    crd = _load_crd(crd_path)
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = _without_descriptions(served["schema"]["openAPIV3Schema"])
            return schema
    raise KeyError(f"{crd_path} has no version {version}")


@cache
def inferenceservice_schema() -> dict[str, Any]:
    """KServe's InferenceService v1beta1 schema (loaded once per process)."""
    schema: dict[str, Any] = json.loads(INFERENCESERVICE_SCHEMA.read_text(encoding="utf-8"))
    return schema


@cache
def inferencegraph_schema() -> dict[str, Any]:
    """KServe's InferenceGraph v1alpha1 schema (loaded once per process)."""
    schema: dict[str, Any] = json.loads(INFERENCEGRAPH_SCHEMA.read_text(encoding="utf-8"))
    return schema


def main(argv: list[str]) -> int:
    """Rewrite the packaged schema of the CRD file named in ``argv`` (InferenceService or
    InferenceGraph, told by the CRD's kind)."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m controller.schemas PATH/TO/CRD.yaml\n")
        return 2
    crd_path = Path(argv[0])
    kind = _load_crd(crd_path)["spec"]["names"]["kind"]
    if kind not in _PACKAGED:
        sys.stderr.write(f"{crd_path} defines {kind}; known: {', '.join(sorted(_PACKAGED))}\n")
        return 2
    target, version = _PACKAGED[kind]
    schema = extract_openapi_schema(crd_path, version)
    target.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    return 0
