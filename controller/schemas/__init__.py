"""Upstream schemas Sluice validates manifests against before anything is committed.

KServe's InferenceService CRD is 2 MB of YAML; the package carries only its
``openAPIV3Schema`` as compact JSON without descriptions (what validation needs), extracted by
:func:`extract_openapi_schema`. Refresh it from a newer CRD with
``python -m controller.schemas PATH/TO/serving.kserve.io_inferenceservices.yaml``.
Source and licence: ``NOTICE`` beside this file.
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

__all__ = ["INFERENCESERVICE_SCHEMA", "extract_openapi_schema", "inferenceservice_schema", "main"]

INFERENCESERVICE_SCHEMA = Path(__file__).with_name("inferenceservice-v1beta1.json")


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_descriptions(value) for key, value in node.items() if key != "description"
        }
    if isinstance(node, list):
        return [_without_descriptions(item) for item in node]
    return node


def extract_openapi_schema(crd_path: Path, version: str = "v1beta1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version of a CRD, without descriptions."""
    crd = yaml.load(crd_path.read_text(encoding="utf-8"), Loader=SafeLoader)
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


def main(argv: list[str]) -> int:
    """Rewrite the packaged schema from the CRD file named in ``argv``."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m controller.schemas PATH/TO/inferenceservices-crd.yaml\n")
        return 2
    schema = extract_openapi_schema(Path(argv[0]))
    INFERENCESERVICE_SCHEMA.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    return 0
