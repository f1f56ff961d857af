"""Render an environment as Argo CD would, and validate it before anything is committed.

Argo CD renders each overlay with kustomize and applies the result; KServe's admission webhook
then rejects a malformed InferenceService, after the merge, in the middle of a sync. Sluice
renders the same way (``kubectl kustomize``) and validates every InferenceService against the
CRD's own schema first, and against the admission rules of a RawDeployment ``spec.canary``
that the schema cannot express (:mod:`controller.manifests.deployment_mode`), so an invalid pin is
never committed. An InferenceGraph beside them is validated the same way, strictly
(:mod:`controller.manifests.inference_graph`). A caller that names the tree an overlay is in
has a render of the same files answered from memory (:mod:`controller.manifests.render_cache`);
what it renders is validated every time.
"""

from __future__ import annotations

import copy
import json
import re
import resource
import shutil
import subprocess
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from controller.errors import ConfigError, ManifestInvalid
from controller.limits import (
    KUSTOMIZE_MEMORY_BYTES,
    KUSTOMIZE_TIMEOUT_SECONDS,
    PIN_FILE_MAX_BYTES,
    check_size,
    human_bytes,
)
from controller.manifests.deployment_mode import canary_admission_errors
from controller.manifests.inference_graph import validate_inferencegraph
from controller.manifests.render_cache import remember, remembered, tree_key
from controller.manifests.schema_problem import first_schema_problem
from controller.schemas import inferenceservice_schema
from controller.yaml_config import check_yaml_text

# jsonschema (about 30 ms of CPU) loads on the first validation, not with every command that
# imports this module on its way elsewhere.
if TYPE_CHECKING:
    from jsonschema import Draft7Validator

__all__ = [
    "check_overlay_files",
    "render_overlay",
    "validate_inferenceservice",
    "validate_rendered",
]

_YAML_SUFFIXES = (".yaml", ".yml")


def check_overlay_files(directory: Path) -> None:
    """Refuse an overlay whose YAML files are too large or use anchors or aliases, before
    kustomize (which expands aliases) ever sees them."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if path.suffix not in _YAML_SUFFIXES or not path.is_file():
            continue
        label = str(path)
        try:
            check_size(
                path.stat().st_size, PIN_FILE_MAX_BYTES, label=label, kind="pin file",
                error=ManifestInvalid,
            )  # fmt: skip
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ManifestInvalid(f"{label} cannot be read ({exc.strerror})") from None
        check_yaml_text(
            text, label=label, limit=PIN_FILE_MAX_BYTES, kind="pin file", error=ManifestInvalid
        )


def _limit_child() -> None:  # pragma: no cover - runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (KUSTOMIZE_MEMORY_BYTES, KUSTOMIZE_MEMORY_BYTES))


def render_overlay(directory: Path, *, tree: Path | None = None) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``, parsed; :class:`ManifestInvalid` if it fails. With
    ``tree``, the checkout ``directory`` is in, a render of files identical to an earlier
    one's is not run again."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError(
            "kubectl not found on PATH: install it (Sluice uses `kubectl kustomize` to render "
            "overlays; no cluster is needed)"
        )
    check_overlay_files(directory)
    key = tree_key(tree, directory, kubectl) if tree is not None else None
    known = remembered(key)
    if known is not None:
        return copy.deepcopy(known)
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT_SECONDS,
            check=False,
            # Only setrlimit runs between fork and exec: no lock is taken, so threads are safe.
            preexec_fn=_limit_child,
        )
    except subprocess.TimeoutExpired:
        raise ManifestInvalid(
            f"kubectl kustomize {directory} did not finish within {KUSTOMIZE_TIMEOUT_SECONDS} s; "
            "simplify the overlay"
        ) from None
    if result.returncode != 0:
        raise ManifestInvalid(f"kubectl kustomize {directory} failed: {_failure(result)}")
    try:
        parsed = [_document(text) for text in _DOCUMENT_START.split(result.stdout)]
    except YAMLError:
        raise ManifestInvalid(f"kubectl kustomize {directory} produced unreadable YAML") from None
    documents = [doc for doc in parsed if doc]
    remember(key, documents)
    return copy.deepcopy(documents)


#: Where kustomize starts each document of its output (a ``---`` line of its own).
_DOCUMENT_START = re.compile(r"^---[ \t]*$", re.MULTILINE)


@lru_cache(maxsize=4096)
def _document(text: str) -> Any:
    """One rendered document, parsed once per text: a proposal renders its whole overlay, and
    parsing a hundred unchanged InferenceServices each time cost ~0.5 s a proposal."""
    return YAML(typ="safe").load(text)


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    """What kustomize said, in one line: a crash of Go's runtime (out of memory under the
    address-space limit, a signal) is named as such, not by the last line of its stack dump."""
    stderr = result.stderr or ""
    if "out of memory" in stderr or "cannot allocate memory" in stderr:
        return (
            f"it ran out of its {human_bytes(KUSTOMIZE_MEMORY_BYTES)} memory limit; "
            "simplify the overlay"
        )
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith(("fatal error:", "panic:")):
        return lines[0]
    return (lines or ["no output"])[-1]


@cache
def _validator() -> Draft7Validator:
    from jsonschema import Draft7Validator  # on first use: see the imports

    return Draft7Validator(inferenceservice_schema())


def validate_inferenceservice(document: dict[str, Any], *, source: str) -> None:
    """Check one InferenceService against KServe's CRD schema and canary admission rules; the
    first error, in one line."""
    key = json.dumps(document, sort_keys=True, default=str)
    if key in _VALID:
        return  # the same document passed before (a proposal validates the whole overlay)
    _check_inferenceservice(document, source=source)
    if len(_VALID) >= _VALID_LIMIT:
        _VALID.clear()
    _VALID.add(key)


#: InferenceServices that passed :func:`validate_inferenceservice`, as canonical JSON.
_VALID: set[str] = set()
_VALID_LIMIT = 4096


def _check_inferenceservice(document: dict[str, Any], *, source: str) -> None:
    problem = first_schema_problem(_validator(), document)
    if problem is not None:
        raise ManifestInvalid(f"{source}: {problem.line('InferenceService')}; fix the manifest")
    refused = canary_admission_errors(document)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ManifestInvalid(
            f"{source}: InferenceService {refused[0]}{more}; KServe would refuse it, fix it"
        )


def validate_rendered(directory: Path, *, tree: Path | None = None) -> list[dict[str, Any]]:
    """Render an overlay (in ``tree``, when given: see :func:`render_overlay`) and validate
    every InferenceService and InferenceGraph in it; returns the documents."""
    documents = render_overlay(directory, tree=tree)
    for document in documents:
        name = (document.get("metadata") or {}).get("name", "?")
        if document.get("kind") == "InferenceService":
            validate_inferenceservice(document, source=f"{directory} ({name})")
        elif document.get("kind") == "InferenceGraph":
            validate_inferencegraph(document, source=f"{directory} ({name})")
    return documents
