"""KServe's InferenceService status schema, made strict, for tests that check produced statuses.

The packaged schema (``controller/schemas``) is extracted from the upstream CRD
(``tests/test_render.py`` checks they agree). The CRD lets unknown fields through; these tests
refuse them, so a misspelt status field fails instead of passing unnoticed.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from controller.schemas import inferenceservice_schema

__all__ = ["status_errors", "strict"]


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


_VALIDATOR = jsonschema.Draft7Validator(
    strict(copy.deepcopy(inferenceservice_schema()["properties"]["status"]))
)


def status_errors(status: dict[str, Any]) -> list[str]:
    """Every way ``status`` breaks the strict InferenceService status schema."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in _VALIDATOR.iter_errors(status)]
