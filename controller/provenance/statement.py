"""The in-toto Statement (v1) with an SLSA provenance (v1) predicate that training records.

Its shape, for one version::

    _type          https://in-toto.io/Statement/v1
    subject        one per file of the model artifact: {name: "model.pkl", digest: {sha256}}
    predicateType  https://slsa.dev/provenance/v1
    predicate.buildDefinition
      buildType             https://sluice.dev/training/v1
      externalParameters    the entry point and the run's parameters
      internalParameters    the registered model, version and MLflow run
      resolvedDependencies  the training code (git+URL, gitCommit), each dataset (canonical
                            sha256, rows, DVC md5 and path, the data contract's result), the
                            base model if any
    predicate.runDetails
      builder.id            the CI workflow run's URL, or "local"
      byproducts            the quality gate's verdict (quality_gate.json: passed, summary)

:func:`build_statement` is pure: every fact comes in as an argument, and the result is
checked with the ``in-toto-attestation`` library's own validation before it is returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.provenance.dataset import DatasetRecord

__all__ = [
    "ATTESTATION_ARTIFACT",
    "BUILD_TYPE",
    "LOCAL_BUILDER",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "CodeSource",
    "build_statement",
    "builder_id",
    "code_source_from_env",
    "file_digests",
    "statement_subjects",
    "validate_statement",
]

#: The run artifact holding a version's DSSE envelope (one JSON line).
ATTESTATION_ARTIFACT = "provenance.intoto.jsonl"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://sluice.dev/training/v1"
#: The builder of a version trained outside CI.
LOCAL_BUILDER = "local"


@dataclass(frozen=True)
class CodeSource:
    """The training code: its repository (``git+URL``) and commit."""

    repository: str
    commit: str
    dirty: bool = False


def builder_id(env: Mapping[str, str]) -> str:
    """The workflow run's URL inside GitHub Actions, ``local`` anywhere else."""
    server, repo, run = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_RUN_ID"),
    )
    if env.get("GITHUB_ACTIONS") == "true" and server and repo and run:
        return f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
    return LOCAL_BUILDER


def code_source_from_env(env: Mapping[str, str]) -> CodeSource | None:
    """The commit GitHub Actions checked out (``GITHUB_SHA``), or None outside Actions."""
    server, repo, sha = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_SHA"),
    )
    if env.get("GITHUB_ACTIONS") == "true" and server and repo and sha:
        return CodeSource(repository=f"git+{server.rstrip('/')}/{repo}", commit=sha)
    return None


def file_digests(root: Path) -> dict[str, str]:
    """The sha256 (hex) of every file under ``root``, by its POSIX path relative to it."""
    digests: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        digests[path.relative_to(root).as_posix()] = digest.hexdigest()
    return digests


def _sha256(digest: str) -> dict[str, str]:
    return {"sha256": digest.removeprefix("sha256:")}


def _dataset_dependency(dataset: DatasetRecord) -> dict[str, Any]:
    annotations: dict[str, Any] = {
        "role": dataset.name,
        "rows": dataset.rows,
        "columns": list(dataset.columns),
        "source": dataset.source,
    }
    if dataset.contract:
        annotations["dataContract"] = dict(dataset.contract)
    dependency: dict[str, Any] = {
        "name": f"dataset:{dataset.name}",
        "digest": _sha256(dataset.digest),
        "annotations": annotations,
    }
    if dataset.dvc is not None:
        dependency["uri"] = f"dvc:{dataset.dvc.path}"
        dependency["digest"]["md5"] = dataset.dvc.md5
        annotations["dvc"] = {
            key: value
            for key, value in {
                "path": dataset.dvc.path,
                "md5": dataset.dvc.md5,
                "size": dataset.dvc.size,
                "remote": dataset.dvc.remote,
            }.items()
            if value is not None
        }
    return dependency


def build_statement(
    *,
    subjects: Mapping[str, str],
    model: str,
    version: int,
    run_id: str,
    entry_point: str,
    parameters: Mapping[str, Any],
    datasets: Sequence[DatasetRecord],
    code: CodeSource | None,
    builder: str,
    gate: Mapping[str, Any],
    base_model: str | None = None,
) -> dict[str, Any]:
    """The statement for one registered version (see the module doc for its shape).

    ``subjects`` maps each artifact file's path to its sha256; ``gate`` is the quality gate's
    verdict as logged (``quality_gate.json``).
    """
    dependencies: list[dict[str, Any]] = []
    if code is not None:
        source: dict[str, Any] = {
            "name": "training code",
            "uri": f"{code.repository}@{code.commit}",
            "digest": {"gitCommit": code.commit},
        }
        if code.dirty:
            source["annotations"] = {"dirty": True}
        dependencies.append(source)
    dependencies.extend(_dataset_dependency(dataset) for dataset in datasets)
    if base_model is not None:
        dependencies.append({"name": "base model", "uri": base_model})
    gate_text = json.dumps(dict(gate), indent=1).encode("utf-8")
    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": statement_subjects(subjects),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "entryPoint": entry_point,
                    "parameters": {str(k): v for k, v in parameters.items()},
                },
                "internalParameters": {
                    "registeredModel": model,
                    "version": version,
                    "mlflowRunId": run_id,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder},
                "byproducts": [
                    {
                        "name": "quality_gate.json",
                        "digest": {"sha256": hashlib.sha256(gate_text).hexdigest()},
                        "annotations": {
                            "passed": bool(gate.get("passed")),
                            "verdict": dict(gate),
                        },
                    }
                ],
            },
        },
    }
    validate_statement(statement)
    return statement


def statement_subjects(subjects: Mapping[str, str]) -> list[dict[str, Any]]:
    """A Statement's ``subject`` list: one entry per name with its sha256 (hex), by name."""
    return [
        {"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())
    ]


def validate_statement(statement: Mapping[str, Any]) -> None:
    """Raise ValueError when ``statement`` is not a valid in-toto Statement v1, as the
    ``in-toto-attestation`` library judges it (type, subjects with digests, predicate)."""
    from google.protobuf import json_format
    from google.protobuf.message import Error as ProtobufError
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    try:
        message = json_format.ParseDict(dict(statement), statement_pb2.Statement())
    except (ProtobufError, TypeError) as exc:
        raise ValueError(f"not an in-toto Statement v1: {exc}") from None
    Statement.copy_from_pb(message).validate()
