"""``python -m controller.local.serving``: serve one MLflow model with KServe's model server.

This is the container command of Sluice's custom ServingRuntime on a cluster and the process
the local target starts per revision, so it speaks KServe's V1 and V2 protocols through
``kserve.ModelServer`` itself rather than an imitation. Three facts of kserve 0.21 shape it:

- importing ``kserve`` runs ``kserve.model_server``, which parses ``sys.argv`` and builds a
  FastAPI app; so ``kserve`` is imported only inside :func:`main`, after our own arguments
  are parsed and ``sys.argv`` is cut to the program name (its flags would otherwise be read
  by kserve's parser, which accepts abbreviations);
- its REST server hard-codes host ``0.0.0.0`` in the ``uvicorn.Config`` it builds inside
  ``ModelServer.start``; the config is read when uvicorn binds, so the subclass below sets
  ``config.host`` in ``setup_event_loop``, the one hook between building and binding;
- gRPC listens on ``[::]:8081`` unless ``enable_grpc=False``; it is off unless asked for.

The model is loaded before the server starts: a model that cannot load exits with status 1
and one line on stderr, so the HTTP port opens only when predictions will succeed. With the
model comes its drift monitor (:mod:`.monitor`), when the version has a reference profile:
each prediction queues its inputs and output for it (unless the request carries
``X-Sluice-Synthetic``, as the canary's load test does), and its gauges join kserve's own
metrics on ``/metrics``. Every inference request is also counted and timed by its status code
(``sluice_request_duration_seconds{code}``, :mod:`.request_metrics`), the request metrics of a
revision that has no Knative queue-proxy in front of it (KServe's RawDeployment mode).

A V1 request without ``instances`` may be an InferenceGraph Ensemble's answer, passed on by a
Sequence step with ``data: $response``: its steps' predictions are joined into rows
(:mod:`.ensemble_answer`), so a model that combines the Ensemble's members takes it as is.

Where Knative sets ``K_REVISION`` (every Serverless revision's pod), every answer names the
revision in ``X-Sluice-Revision`` (:mod:`.revision_header`), as the local routers' answers do:
an InferenceGraph's router labels its step series with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

from controller.errors import ConfigError
from controller.local.processes import http_ok
from controller.local.serving.ensemble_answer import is_ensemble_answer, rows_from_ensemble_answer
from controller.local.serving.monitor import DriftMonitor, start_drift_monitor
from controller.local.serving.prediction_placement import PredictionPlacement
from controller.local.serving.pyfunc_model import (
    ModelLoadFailed,
    PayloadError,
    PyfuncServable,
    Tensor,
    v2_datatype,
)
from controller.local.serving.request_metrics import (
    WARM_UP_HEADER,
    WARMING_UP,
    RequestMetrics,
    request_histogram,
)
from controller.local.serving.revision_header import answer_with_revision
from controller.synthetic_traffic import SYNTHETIC_HEADER, is_synthetic

__all__ = ["build_kserve_model", "main", "parse_args"]

log = logging.getLogger("sluice.serving")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults suit a local process, a cluster passes ``--host 0.0.0.0``."""
    parser = argparse.ArgumentParser(
        prog="python -m controller.local.serving",
        description="Serve an MLflow pyfunc model over KServe's V1 and V2 REST protocols.",
        allow_abbrev=False,
    )
    parser.add_argument("--model-name", required=True, help="name in /v1/models/NAME")
    parser.add_argument(
        "--storage-uri",
        required=True,
        help="model directory, file://, mlflow-artifacts:/, models:/ or runs:/ URI",
    )
    parser.add_argument("--http-port", type=int, default=8080, help="REST port (8080)")
    parser.add_argument("--host", default="127.0.0.1", help="REST address (127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC here")
    parser.add_argument("--download-dir", type=Path, help="where remote models are fetched to")
    parser.add_argument(
        "--latency-logging", action="store_true", help="log per-request latencies (KServe's)"
    )
    drift = parser.add_argument_group("drift monitor (on when the version has a profile)")
    drift.add_argument(
        "--no-drift-monitor", action="store_true", help="do not monitor drift, even with a profile"
    )
    drift.add_argument("--registered-model", help="model label (default: from the run)")
    drift.add_argument("--model-version", help="version label (default: from the run)")
    drift.add_argument(
        "--drift-window-rows", type=int, default=1000, help="rows in the window (1000)"
    )
    drift.add_argument(
        "--drift-interval-seconds", type=float, default=5.0, help="evaluate every (5 s)"
    )
    drift.add_argument("--drift-config", type=Path, help="thresholds YAML, as `sluice drift`")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load the model, then serve it until SIGTERM; 1 when the model cannot be loaded."""
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    # kserve 0.21 answers through FastAPI's deprecated ORJSONResponse, and scikit-learn's and
    # pandas' catch_warnings() reset Python's once-per-place record, so the warning was written
    # to the log at every request: nothing a user of the model server can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    servable = PyfuncServable(args.storage_uri, download_dir=args.download_dir)
    try:
        servable.load()
    except ModelLoadFailed as exc:
        print(f"model {args.model_name!r} not loadable: {exc}", file=sys.stderr, flush=True)
        return 1
    # Before the port opens (so before Ready): a fresh revision's first requests would
    # otherwise pay for lazy imports and caches, and a canary judged against a warm primary
    # on a loaded machine looked slower than it is.
    warmed = servable.warm_up()
    print(f"warm-up: {warmed} prediction(s) on the input example", file=sys.stderr, flush=True)
    warm_up_rows = servable.warm_up_rows()
    monitor = None
    if not args.no_drift_monitor:
        try:
            monitor = start_drift_monitor(
                servable.run_id,
                args.model_name,
                registered_model=args.registered_model,
                version=args.model_version,
                config_file=args.drift_config,
                window_rows=args.drift_window_rows,
                interval_seconds=args.drift_interval_seconds,
            )
        except (ConfigError, ValueError) as exc:
            print(f"drift monitor of {args.model_name!r}: {exc}", file=sys.stderr, flush=True)
            return 2
    model = build_kserve_model(args.model_name, servable, monitor=monitor)
    _serve(model, args, warm_up_rows)
    return 0


def build_kserve_model(
    name: str, servable: PyfuncServable, *, monitor: DriftMonitor | None = None
) -> Any:
    """A loaded ``kserve.Model`` named ``name`` that answers with ``servable``.

    With a ``monitor``, every successful prediction queues its frame and output for it,
    except a request with the ``X-Sluice-Synthetic`` header
    (:mod:`controller.synthetic_traffic`), which is answered but left out of the drift window.

    A prediction runs on the event loop while this model's predictions are quick, else in a
    thread (:mod:`.prediction_placement`).

    The class is defined here, not at module level, because subclassing ``kserve.Model``
    needs ``import kserve`` (see the module docstring).
    """
    from kserve import Model
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class MlflowPyfuncModel(Model):  # type: ignore[misc]  # kserve ships no type hints
        """V1 and V2 inference and V2 metadata for an MLflow pyfunc model."""

        def load(self) -> bool:
            self.ready = True
            return True

        async def healthy(self) -> bool:
            # Ready (the probes' answer) only once the HTTP warm-up is done; the warm-up's
            # own requests pass (kserve refuses predictions to a model that is not ready).
            return bool(self.ready) and (warmed.is_set() or WARMING_UP.get())

        def get_input_types(self) -> list[dict[str, Any]]:
            return [t.to_dict() for t in servable.inputs]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [t.to_dict() for t in servable.outputs]

        async def predict(
            self,
            payload: Any,
            headers: dict[str, str] | None = None,
            response_headers: dict[str, str] | None = None,
        ) -> Any:
            v2 = isinstance(payload, InferRequest)
            try:
                if v2:
                    tensors = [
                        Tensor(i.name, i.datatype, list(i.shape), i.data) for i in payload.inputs
                    ]
                    frame = servable.frame_from_tensors(tensors)
                elif is_ensemble_answer(payload):
                    try:
                        rows = rows_from_ensemble_answer(payload)
                    except ValueError as exc:
                        raise PayloadError(str(exc)) from exc
                    frame = servable.frame_from_instances(rows)
                else:
                    frame = servable.frame_from_instances(payload.get("instances"))
            except PayloadError as exc:
                raise InvalidInput(str(exc)) from exc
            # A quick model predicts on the loop; a slow one in a thread, so that it does not
            # stall the process's other requests (probes and scrapes included).
            if placement.inline:
                result = timed_predict(frame)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, timed_predict, frame)
            # Synthetic requests (the canary's load test) are answered, not monitored: a few
            # repeated rows would read as drift.
            if monitor is not None and not is_synthetic(headers):
                monitor.record(frame, result)  # a deque append: the work is off this path
            if not v2:
                return {"predictions": servable.predictions(result)}
            outputs = [
                InferOutput(name, list(array.shape), v2_datatype(array), array.reshape(-1).tolist())
                for name, array in servable.output_tensors(result)
            ]
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)

    placement = PredictionPlacement()

    def timed_predict(frame: Any) -> Any:
        started = time.perf_counter()
        try:
            return servable.predict(frame)
        finally:
            placement.observe(time.perf_counter() - started)

    warmed = threading.Event()
    warmed.set()  # until _serve arms the HTTP warm-up
    model = MlflowPyfuncModel(name)
    model.warmed = warmed
    model.load()
    return model


def _serve(model: Any, args: argparse.Namespace, warm_up: list[dict[str, Any]] | None) -> None:
    from kserve import ModelServer, model_server

    host: str = args.host

    class BoundModelServer(ModelServer):  # type: ignore[misc]  # kserve ships no type hints
        """kserve's server, listening on ``host`` instead of its hard-coded 0.0.0.0."""

        def setup_event_loop(self) -> None:
            config = getattr(getattr(self, "_rest_server", None), "config", None)
            if config is None or not hasattr(config, "host"):
                raise RuntimeError("kserve's REST server changed: cannot set its listen address")
            config.host = host
            super().setup_event_loop()

        def register_signal_handler(self) -> None:
            """kserve's handlers, except that a stop asked for before uvicorn serves ends the
            process at once. kserve's own handler stops only a multi-process REST server and
            uvicorn's takes over only once it serves, so a SIGTERM in between was lost: a
            server stopped right after a warm start (within 0.3 s) kept running until killed."""

            def on_signal(sig: int, frame: object) -> None:
                serving = getattr(getattr(self._rest_server, "_server", None), "started", False)
                if not serving:
                    raise SystemExit(128 + sig)
                self.stop(sig)

            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                signal.signal(sig, on_signal)

    # kserve serves the module-level FastAPI app ``kserve.model_server:app``; a middleware added
    # before the server starts wraps every route, inside Starlette's outermost error handler.
    model_server.app.add_middleware(RequestMetrics, histogram=request_histogram())
    # Knative sets K_REVISION in every revision's pod: a graph's router reads it from the
    # answers to label its step series with the member revision that answered.
    answer_with_revision(model_server.app, os.environ.get("K_REVISION"))
    server = BoundModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port or 8081,
        enable_grpc=args.grpc_port is not None,
        workers=1,
        enable_latency_logging=args.latency_logging,
    )
    log.info(
        "serving model %s from %s on %s:%d", model.name, args.storage_uri, host, args.http_port
    )
    if warm_up is not None:
        model.warmed.clear()
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{args.http_port}"  # noqa: S104
        threading.Thread(
            target=warm_up_over_http,
            args=(url, model.name, warm_up, model.warmed),
            name="warm-up",
            daemon=True,
        ).start()
    server.start([model])


def warm_up_over_http(
    url: str, name: str, rows: list[dict[str, Any]], done: threading.Event, calls: int = 3
) -> None:
    """Send ``calls`` V1 predictions of ``rows`` to the server's own port once it is live,
    then set ``done``: the first requests through kserve's HTTP stack (connection handling,
    request parsing, response encoding) are the slow ones, and a readiness probe with a
    warm-up request keeps clients away from them on a cluster. Best effort: whatever the
    answers, ``done`` is set, after at most a minute."""
    body = json.dumps({"instances": rows}, default=_json_value).encode()
    headers = {"Content-Type": "application/json", WARM_UP_HEADER: "1", SYNTHETIC_HEADER: "warm-up"}
    deadline = time.monotonic() + 60.0
    answered = 0
    try:
        while time.monotonic() < deadline and not http_ok(f"{url}/v2/health/live", timeout=1):
            time.sleep(0.05)
        for _ in range(calls):
            request = urllib.request.Request(  # noqa: S310 (our own loopback port)
                f"{url}/v1/models/{name}:predict", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                    answer.read()
            except OSError:  # an erroring model still serves: the gates judge it
                continue
            answered += 1
    finally:
        message = f"warm-up over HTTP: {answered} of {calls} requests answered; ready"
        print(message, file=sys.stderr, flush=True)
        done.set()


def _json_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
