"""What any training script calls to give Sluice a model's drift reference and gate verdict.

One call before training, the others inside the MLflow run that logged the model::

    from controller import training

    checked = training.validate_frame(frame, SCHEMA, source="data/train.csv")
    ...  # train, log and register the model (info)
    training.log_reference_profile(X_train, predictions=model.predict(X_train))
    training.record_gate(info, {"r2": r2}, minimum={"r2": 0.3})
    training.record_provenance(
        info, datasets=[training.dataset(X_train, name="train", contract=checked)], gate=verdict
    )

:func:`validate_frame` checks the training data against its contract (Sluice's
:class:`~controller.quality.data_contract.DataContract` or the team's own pandera schema) and
raises one line naming every violation, before anything is trained or logged; what it
returns is the data's record in the provenance attestation.

:func:`log_reference_profile` logs ``reference_profile.json`` (the training data profile the
drift monitor and ``sluice drift`` compare live inputs with); without it a model still rolls
out, with drift monitoring off. :func:`record_gate` evaluates a quality gate on the holdout
metrics, logs ``quality_gate.json``, tags the registered version ``sluice.gate`` /
``sluice.gate_summary`` (shown in the proposal's model card), and points the ``challenger``
alias at it when it passed, which is what ``sluice propose`` follows.
:func:`record_provenance` records what the version was built from (its datasets' digests,
the training commit, the builder, the gate's verdict) as a signed in-toto attestation,
``provenance.intoto.jsonl``, and tags the version with its digest (see
:mod:`controller.provenance`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from controller.provenance.dataset import DatasetRecord, dataset_record
from controller.provenance.signing import (
    KEY_ENV,
    envelope_digest,
    envelope_line,
    load_signer,
    sign_statement,
)
from controller.provenance.statement import (
    ATTESTATION_ARTIFACT,
    CodeSource,
    build_statement,
    builder_id,
    code_source_from_env,
    file_digests,
)
from controller.quality.data_contract import Contract, ContractResult, validate_frame
from controller.quality.data_profile import build_profile
from controller.quality.quality_gate import GateVerdict, QualityGate, evaluate_gate

__all__ = [
    "CHALLENGER_ALIAS",
    "ProvenanceRecord",
    "check_signing_key",
    "dataset",
    "log_reference_profile",
    "record_gate",
    "record_provenance",
    "validate_frame",
]

#: The alias ``sluice propose`` follows by default (a release's ``alias``).
CHALLENGER_ALIAS = "challenger"


def _log_json(name: str, document: Mapping[str, Any]) -> None:
    if mlflow.active_run() is None:
        raise RuntimeError(f"log {name} inside the MLflow run that logged the model")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
        mlflow.log_artifact(str(path))


def log_reference_profile(
    features: pd.DataFrame,
    *,
    predictions: Sequence[float] | Any = None,
    categorical: Sequence[str] | None = None,
    label: str | None = None,
) -> None:
    """Log ``reference_profile.json`` of the training features to the active run.

    Numeric columns are profiled as numbers and the others (or ``categorical``) as
    categories; ``predictions`` (the model's scores on the same rows) lets the monitor watch
    prediction drift too.
    """
    names = [c for c in features.columns if c != label]
    cats = (
        list(categorical)
        if categorical is not None
        else [c for c in names if not pd.api.types.is_numeric_dtype(features[c])]
    )
    numeric = [c for c in names if c not in cats]
    scores = None if predictions is None else np.asarray(_flat(predictions))
    profile = build_profile(
        features, numeric=numeric, categorical=cats, predictions=scores, label=label
    )
    _log_json("reference_profile.json", profile.model_dump(mode="json"))


def _flat(values: Any) -> list[float]:
    array = np.asarray(values, dtype=float)
    if array.ndim == 2:  # class probabilities: the last class's score
        array = array[:, -1]
    return [float(v) for v in array.reshape(-1)]


def record_gate(
    model: Any,
    metrics: Mapping[str, float],
    *,
    minimum: Mapping[str, float] | None = None,
    maximum: Mapping[str, float] | None = None,
    champion_metrics: Mapping[str, float] | None = None,
    max_regression: Mapping[str, float] | None = None,
) -> GateVerdict:
    """Judge ``metrics`` against the gate, log ``quality_gate.json`` to the active run, tag the
    registered version, and set ``challenger`` on it when it passed.

    ``model`` is what ``mlflow.<flavour>.log_model(..., registered_model_name=NAME)`` returned
    (its ``registered_model_version``), or a ``(name, version)`` pair.
    """
    name, version = _name_version(model)
    gate = QualityGate.model_validate(
        {
            "minimum": dict(minimum or {}),
            "maximum": dict(maximum or {}),
            "max_regression": dict(max_regression or {}),
        }
    )
    verdict = evaluate_gate(
        dict(metrics), dict(champion_metrics) if champion_metrics else None, gate
    )
    _log_json("quality_gate.json", verdict.model_dump(mode="json"))
    client = MlflowClient()
    client.set_model_version_tag(
        name, str(version), "sluice.gate", "passed" if verdict.passed else "failed"
    )
    client.set_model_version_tag(name, str(version), "sluice.gate_summary", verdict.summary()[:500])
    if verdict.passed:
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, str(version))
    return verdict


def _registered_name(info: Any, version: int) -> str:
    """The registered model name of a ModelInfo (MLflow 3 keeps it on the logged model)."""
    client = MlflowClient()
    run_id = getattr(info, "run_id", None)
    found = client.search_model_versions(filter_string=f"run_id = '{run_id}'")
    for candidate in found:
        if int(candidate.version) == version:
            return str(candidate.name)
    raise ValueError(f"no registered version {version} of run {run_id}: give (name, version)")


def dataset(
    frame: pd.DataFrame,
    *,
    name: str,
    source: str = "",
    path: Path | None = None,
    contract: ContractResult | Contract | None = None,
) -> DatasetRecord:
    """The record of one dataset the model was trained or validated on (``name``: its role,
    e.g. train or holdout): the canonical digest of exactly these rows, DVC's md5 and path
    when ``path`` is tracked by DVC, and the data contract it passed.

    ``contract`` is what :func:`validate_frame` returned when the script checked its data
    before training (the rows it covered, the checks it ran), or a contract (a
    :class:`~controller.quality.data_contract.DataContract`, a pandera ``DataFrameSchema`` or
    ``DataFrameModel`` class) to check these rows against now: a
    :class:`~controller.errors.DataValidationError` when they fail it."""
    result = (
        contract
        if contract is None or isinstance(contract, ContractResult)
        else validate_frame(frame, contract, source=source or name)
    )
    return dataset_record(
        frame,
        name=name,
        source=source,
        path=path,
        contract=result.record() if result is not None else None,
    )


@dataclass(frozen=True)
class ProvenanceRecord:
    """What :func:`record_provenance` recorded: the tag's value and who signed it."""

    tag: str  # sha256:<hex> of the envelope, or "unsigned"
    keyid: str | None
    builder: str
    subjects: int


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _code_source(env: Mapping[str, str]) -> CodeSource | None:
    """The training code's commit: GitHub Actions' checkout, else the working tree's HEAD."""
    found = code_source_from_env(env)
    if found is not None:
        return found
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    remote = _git("config", "--get", "remote.origin.url") or _git("rev-parse", "--show-toplevel")
    return CodeSource(
        repository=f"git+{_without_credentials(remote or 'unknown')}",
        commit=commit,
        dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
    )


def _entry_point() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return str(getattr(spec, "name", None) or Path(sys.argv[0]).name)


def check_signing_key(env: Mapping[str, str] | None = None) -> None:
    """Fail now, before any run or version is written, when ``SLUICE_SIGNING_KEY`` (or
    ``SLUICE_SIGNING_KEY_FILE``) is set but cannot be read: a
    :class:`~controller.errors.ConfigError` naming the variable, never the key. Training
    scripts call it first; :func:`record_provenance` would find the same key unreadable only
    after the version is registered."""
    load_signer(os.environ if env is None else env)


def record_provenance(
    model: Any,
    *,
    datasets: Sequence[DatasetRecord],
    gate: GateVerdict | Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProvenanceRecord:
    """Record a signed provenance attestation of a registered version.

    Hashes every file of the version's artifact as the registry serves it, builds the
    in-toto statement (:mod:`controller.provenance.statement`), signs it with
    ``SLUICE_SIGNING_KEY`` when set, logs it to the version's run as
    ``provenance.intoto.jsonl`` and tags the version ``sluice.provenance`` (the envelope's
    sha256, or ``unsigned``), ``sluice.dataset_digest`` and ``sluice.training_commit``.
    ``model`` is what ``log_model`` returned or a ``(name, version)`` pair; the run may have
    ended. Without a key it says so on stderr and records the statement unsigned.
    """
    name, version = _name_version(model)
    environ = os.environ if env is None else env
    signer = load_signer(environ)  # a bad key fails before the attestation is written
    client = MlflowClient()
    run_id = str(client.get_model_version(name, str(version)).run_id)
    with tempfile.TemporaryDirectory() as tmp:
        uri = client.get_model_version_download_uri(name, str(version))
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        subjects = file_digests(Path(local))
    verdict = gate.model_dump(mode="json") if isinstance(gate, GateVerdict) else dict(gate)
    code = _code_source(environ)
    builder = builder_id(environ)
    statement = build_statement(
        subjects=subjects,
        model=name,
        version=version,
        run_id=run_id,
        entry_point=_entry_point(),
        parameters=dict(parameters or {}),
        datasets=datasets,
        code=code,
        builder=builder,
        gate=verdict,
        base_model=base_model,
    )
    line = envelope_line(sign_statement(statement, signer))
    client.log_text(run_id, line.decode("utf-8"), ATTESTATION_ARTIFACT)
    tag = envelope_digest(line) if signer is not None else "unsigned"
    tags = {
        "sluice.provenance": tag,
        "sluice.dataset_digest": ",".join(f"{d.name}={d.digest}" for d in datasets)[:5000],
    }
    if code is not None:
        tags["sluice.training_commit"] = code.commit
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    if signer is None:
        sys.stderr.write(
            f"provenance: {name} v{version} recorded unsigned ({KEY_ENV} is not set): "
            "sluice provenance verify fails it\n"
        )
    return ProvenanceRecord(
        tag=tag,
        keyid=signer.public_key.keyid if signer is not None else None,
        builder=builder,
        subjects=len(subjects),
    )


def _name_version(model: Any) -> tuple[str, int]:
    if isinstance(model, tuple):
        return str(model[0]), int(model[1])
    version_value = getattr(model, "registered_model_version", None)
    if version_value is None:
        raise ValueError(
            "the model was not registered: pass registered_model_name= to log_model, "
            "or give (name, version)"
        )
    version = int(version_value)
    return str(_registered_name(model, version)), version
