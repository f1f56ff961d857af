"""An MLflow pyfunc model as a KServe model sees it: load from a storage URI, decode, encode.

Everything a KServe ``Model`` must do for an MLflow model lives here, away from ``kserve``
(whose import parses ``sys.argv`` and builds a web app): find the model directory behind a
storage URI, load it, turn V1 ``instances`` and V2 input tensors into the DataFrame the
signature describes, and turn predictions back into V1 ``predictions`` and V2 output tensors.
The same code serves on a cluster, where KServe's storage initializer has already put the
model in ``/mnt/models`` and the URI is that directory.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controller.errors import ModelLoadFailed

__all__ = [
    "ModelLoadFailed",
    "PayloadError",
    "PyfuncServable",
    "Tensor",
    "TensorMetadata",
    "resolve_storage_uri",
    "v2_datatype",
]

# MLflow column types -> V2 datatypes and the numpy dtype a column is cast to.
_V2_TYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
_CASTS = {"boolean": "bool", "integer": "int32", "long": "int64", "float": "float32"}
_CASTS["double"] = "float64"


class PayloadError(ValueError):
    """A request body that does not fit the model's signature (answered with HTTP 400)."""


@dataclass(frozen=True)
class TensorMetadata:
    """One input or output in V2 model metadata."""

    name: str
    datatype: str
    shape: list[int]

    def to_dict(self) -> dict[str, Any]:
        """As in ``GET /v2/models/NAME``."""
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class Tensor:
    """A decoded V2 tensor: flat row-major ``data`` of ``shape``."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


def resolve_storage_uri(storage_uri: str, download_dir: Path) -> Path:
    """The local model directory behind ``storage_uri``, downloading it when it is remote.

    ``file://`` URIs and plain paths are used in place. Anything else (``mlflow-artifacts:/``,
    ``models:/``, ``runs:/``, ``s3://``...) goes through MLflow, which reads the tracking
    server from ``MLFLOW_TRACKING_URI``.
    """
    parts = urllib.parse.urlsplit(storage_uri)
    if parts.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parts.path) if parts.scheme else storage_uri)
        if not path.is_dir():
            raise ModelLoadFailed(f"no model directory at {storage_uri}")
        return path
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=storage_uri, dst_path=str(download_dir)
        )
    except Exception as exc:  # MLflow raises many types; all mean "cannot fetch it"
        raise ModelLoadFailed(f"cannot download {storage_uri}: {_first_line(exc)}") from exc
    return Path(local)


class PyfuncServable:
    """One MLflow pyfunc model: :meth:`load` it, then decode, predict and encode."""

    def __init__(self, storage_uri: str, *, download_dir: Path | None = None) -> None:
        self.storage_uri = storage_uri
        self._download_dir = download_dir
        self._model: Any = None
        self._path: Path | None = None
        self.columns: list[tuple[str, str]] = []  # (name, MLflow type) from the signature
        self.inputs: list[TensorMetadata] = []
        self.outputs: list[TensorMetadata] = []

    def load(self) -> None:
        """Fetch and load the model; any failure is one :class:`ModelLoadFailed` line."""
        download_dir = self._download_dir or Path(tempfile.mkdtemp(prefix="sluice-model-"))
        download_dir.mkdir(parents=True, exist_ok=True)
        path = resolve_storage_uri(self.storage_uri, download_dir)
        import mlflow.pyfunc  # after the cheap checks: importing MLflow takes seconds

        self._path = path
        try:
            self._model = mlflow.pyfunc.load_model(str(path))
        except Exception as exc:  # a broken MLmodel, a missing flavour, an unpickling error
            message = f"cannot load an MLflow model from {self.storage_uri}: {_first_line(exc)}"
            raise ModelLoadFailed(message) from exc
        signature = self._model.metadata.signature
        if signature is not None:
            self._describe(signature.inputs, signature.outputs)

    @property
    def run_id(self) -> str | None:
        """The MLflow run that logged the model (its MLmodel's ``run_id``), if it names one."""
        metadata = getattr(self._model, "metadata", None)
        run_id = getattr(metadata, "run_id", None)
        return str(run_id) if run_id else None

    def _describe(self, inputs: Any, outputs: Any) -> None:
        if inputs is not None and not inputs.is_tensor_spec():
            self.columns = [(c.name, str(c.type.name)) for c in inputs.inputs]
            self.inputs = [
                TensorMetadata(n, _V2_TYPES.get(t, "BYTES"), [-1]) for n, t in self.columns
            ]
        elif inputs is not None:
            self.inputs = [_tensor_metadata(s, f"input-{i}") for i, s in enumerate(inputs.inputs)]
        if outputs is not None and not outputs.is_tensor_spec():
            self.outputs = [
                TensorMetadata(c.name or f"output-{i}", _V2_TYPES.get(c.type.name, "BYTES"), [-1])
                for i, c in enumerate(outputs.inputs)
            ]
        elif outputs is not None:
            self.outputs = [
                _tensor_metadata(s, f"output-{i}") for i, s in enumerate(outputs.inputs)
            ]

    # -- requests ----------------------------------------------------------------------------

    def frame_from_instances(self, instances: Any) -> pd.DataFrame:
        """V1 ``instances``: rows as lists (in signature column order) or as dicts."""
        if not isinstance(instances, list) or not instances:
            raise PayloadError('"instances" must be a non-empty list of rows')
        names = [name for name, _ in self.columns]
        if all(isinstance(row, dict) for row in instances):
            frame = pd.DataFrame.from_records(instances)
        elif all(isinstance(row, list) for row in instances):
            if names and any(len(row) != len(names) for row in instances):
                raise PayloadError(f"each instance must have {len(names)} values: {names}")
            frame = pd.DataFrame(instances, columns=names or None)
        else:
            raise PayloadError("instances must all be lists or all be objects")
        return self._typed(frame)

    def frame_from_tensors(self, tensors: Sequence[Tensor]) -> pd.DataFrame:
        """V2 inputs: one tensor per column (by name), or one ``[rows, columns]`` tensor."""
        names = [name for name, _ in self.columns]
        if names and len(tensors) == 1 and tensors[0].name not in names:
            rows = np.asarray(tensors[0].data, dtype=object)
            if rows.size % len(names):
                raise PayloadError(f"a [rows, {len(names)}] tensor must hold {names} per row")
            return self._typed(pd.DataFrame(rows.reshape(-1, len(names)), columns=names))
        if not tensors:
            raise PayloadError('"inputs" must hold at least one tensor')
        columns = {t.name: _decode(t.data) for t in tensors}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise PayloadError("input tensors must all have one value per row")
        return self._typed(pd.DataFrame(columns))

    def _typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Order columns as the signature does and cast them to its types."""
        if not self.columns:
            return frame
        missing = [name for name, _ in self.columns if name not in frame.columns]
        if missing:
            raise PayloadError(f"missing input column(s) {missing}")
        frame = frame[[name for name, _ in self.columns]].copy()
        for name, kind in self.columns:
            if kind in _CASTS:
                try:
                    frame[name] = frame[name].astype(_CASTS[kind])
                except (TypeError, ValueError) as exc:
                    raise PayloadError(f"column {name!r} must be {kind}: {exc}") from None
        return frame

    def warm_up(self, calls: int = 3) -> int:
        """Predict a few times on the model's own input example (or a row of zeros shaped by
        its signature) before the server reports ready, as a readiness probe with a warm-up
        request does on a cluster: the first client request then pays for no lazy import,
        cache or JIT. Returns the predictions that succeeded; a failing one never stops the
        server (a model that errors is the gates' business, not the warm-up's)."""
        frame = self._warm_up_frame()
        done = 0
        for _ in range(calls if frame is not None else 0):
            try:
                self.predict(frame)
            except Exception:  # noqa: S112 (any model error: warming is best effort)
                continue
            done += 1
        return done

    def warm_up_rows(self) -> list[dict[str, Any]] | None:
        """The warm-up rows as V1 ``instances`` objects (None when there are none)."""
        frame = self._warm_up_frame()
        if frame is None:
            return None
        rows: list[dict[str, Any]] = frame.to_dict(orient="records")
        return rows

    def _warm_up_frame(self) -> pd.DataFrame | None:
        example: Any = None
        metadata = getattr(self._model, "metadata", None)
        if metadata is not None and self._path is not None:
            try:
                example = metadata.load_input_example(str(self._path))
            except Exception:
                example = None
        try:
            if isinstance(example, pd.DataFrame) and not example.empty:
                return self._typed(example.head(8))
            if isinstance(example, dict):
                return self._typed(pd.DataFrame([example]))
            if self.columns:
                zeros = {name: ["" if kind == "string" else 0] for name, kind in self.columns}
                return self._typed(pd.DataFrame(zeros))
        except PayloadError:
            return None
        return None

    def predict(self, frame: pd.DataFrame) -> Any:
        """The pyfunc's prediction (errors propagate: the server answers 500)."""
        if self._model is None:
            raise RuntimeError("the model is not loaded")
        return self._model.predict(frame)

    # -- responses ---------------------------------------------------------------------------

    @staticmethod
    def predictions(result: Any) -> list[Any]:
        """V1 ``predictions``: rows of the result (records for a DataFrame)."""
        if isinstance(result, pd.DataFrame):
            records: list[Any] = result.to_dict(orient="records")
            return records
        values: list[Any] = np.asarray(result).tolist()
        return values

    def output_tensors(self, result: Any) -> list[tuple[str, np.ndarray]]:
        """V2 outputs: one per DataFrame column or dict key, else one named as the signature."""
        if isinstance(result, pd.DataFrame):
            return [(str(c), result[c].to_numpy()) for c in result.columns]
        if isinstance(result, dict):
            return [(str(k), np.asarray(v)) for k, v in result.items()]
        name = self.outputs[0].name if len(self.outputs) == 1 else "output-0"
        return [(name, np.asarray(result))]


def v2_datatype(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array (strings and objects are BYTES)."""
    kind, size = array.dtype.kind, array.dtype.itemsize * 8
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{size}"
    if kind == "f":
        return f"FP{size}"
    return "BYTES"


def _tensor_metadata(spec: Any, default_name: str) -> TensorMetadata:
    shape = [int(d) for d in (spec.shape or [-1])]
    return TensorMetadata(spec.name or default_name, v2_datatype(np.empty(0, spec.type)), shape)


def _decode(data: list[Any]) -> list[Any]:
    flat = np.asarray(data, dtype=object).reshape(-1).tolist()
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in flat]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
