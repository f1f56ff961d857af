"""Render an environment as Argo CD would, and validate it before anything is committed.

Argo CD renders each overlay with kustomize and applies the result; KServe's admission webhook
then rejects a malformed InferenceService, after the merge, in the middle of a sync. Sluice
renders the same way (``kubectl kustomize``) and validates every InferenceService against the
CRD's own schema first, and against the admission rules of a RawDeployment ``spec.canary``
that the schema cannot express (:mod:`controller.deployment_mode`), so an invalid pin is never
committed.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from controller.deployment_mode import canary_admission_errors
from controller.errors import ConfigError, ManifestInvalid
from controller.schemas import inferenceservice_schema

__all__ = ["render_overlay", "validate_inferenceservice", "validate_rendered"]

_KUSTOMIZE_TIMEOUT_SECONDS = 60


def render_overlay(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``, parsed; :class:`ManifestInvalid` if it fails."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError(
            "kubectl not found on PATH: install it (Sluice uses `kubectl kustomize` to render "
            "overlays; no cluster is needed)"
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=_KUSTOMIZE_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ManifestInvalid(f"kubectl kustomize {directory} failed: {detail}")
    try:
        return [doc for doc in YAML(typ="safe").load_all(result.stdout) if doc]
    except YAMLError:
        raise ManifestInvalid(f"kubectl kustomize {directory} produced unreadable YAML") from None


@cache
def _validator() -> Draft7Validator:
    return Draft7Validator(inferenceservice_schema())


def validate_inferenceservice(document: dict[str, Any], *, source: str) -> None:
    """Check one InferenceService against KServe's CRD schema and canary admission rules; the
    first error, in one line."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(part) for part in first.absolute_path) or "(document)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestInvalid(
            f"{source}: InferenceService {where}: {first.message}{more}; fix the manifest"
        )
    refused = canary_admission_errors(document)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ManifestInvalid(
            f"{source}: InferenceService {refused[0]}{more}; KServe would refuse it, fix it"
        )


def validate_rendered(directory: Path) -> list[dict[str, Any]]:
    """Render an overlay and validate every InferenceService in it; returns the documents."""
    documents = render_overlay(directory)
    for document in documents:
        if document.get("kind") == "InferenceService":
            name = (document.get("metadata") or {}).get("name", "?")
            validate_inferenceservice(document, source=f"{directory} ({name})")
    return documents
