"""The serving wrapper's request metrics: what is counted, with which code, in which buckets.

The middleware runs here around a small FastAPI app built the way kserve builds its own (an
``Exception`` handler, which Starlette runs in its outermost error middleware, and handlers
that turn kserve's errors into 4xx answers), driven in process through httpx's ASGI transport.
The real model server's ``/metrics`` is checked in ``test_local_serving.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import fastapi
import httpx
import pytest
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CollectorRegistry

from controller.gates.metrics_profile import OTEL_BUCKETS_SECONDS, SLUICE_WRAPPER
from controller.local.serving.request_metrics import (
    INFERENCE_PATH,
    RequestMetrics,
    request_histogram,
)
from controller.testing import ManualClock

NAME = "sluice_request_duration_seconds"


class InvalidInput(Exception):
    """Stands in for kserve.errors.InvalidInput, which kserve answers with 400."""


def kserve_like_app() -> fastapi.FastAPI:
    app = fastapi.FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, fail: str = "") -> JSONResponse:
        if fail == "input":
            raise InvalidInput("bad instances")
        if fail == "crash":
            raise RuntimeError("the model crashed")
        if name != "fraud":
            return JSONResponse({"error": f"Model with name {name} does not exist."}, 404)
        return JSONResponse({"predictions": [0.1]})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, fail: str = "", version: str = "") -> StreamingResponse:
        async def body() -> Iterator[bytes]:  # type: ignore[misc]
            yield b'{"outputs": ['
            if fail == "midway":
                raise RuntimeError("connection lost after the status was sent")
            yield b"]}"

        return StreamingResponse(body(), media_type="application/json")

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict[str, str]:
        return {"name": name}

    async def invalid_input(request: fastapi.Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    async def generic(request: fastapi.Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"{type(exc).__name__} : {exc}"}, 500)

    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(Exception, generic)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(registry: CollectorRegistry) -> httpx.AsyncClient:
    app = kserve_like_app()
    app.add_middleware(
        RequestMetrics, histogram=request_histogram(registry), clock=ManualClock(0.0, tick=0.03)
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://model")


def send(client: httpx.AsyncClient, *requests: tuple[str, str]) -> list[int]:
    async def run() -> list[int]:
        codes = []
        for method, path in requests:
            try:
                codes.append((await client.request(method, path, json={})).status_code)
            except (httpx.HTTPError, RuntimeError):
                codes.append(0)  # the connection died mid-answer
        return codes

    return asyncio.run(run())


def count(registry: CollectorRegistry, code: str) -> float:
    return registry.get_sample_value(f"{NAME}_count", {"code": code}) or 0.0


def test_inference_requests_are_counted_by_status_code(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    """V1 predict and V2 infer (with or without a version) count once each, by their code:
    answers of kserve's handlers (400, 404) and of the outermost error handler (500) too."""
    codes = send(
        client,
        ("POST", "/v1/models/fraud:predict"),
        ("POST", "/v2/models/fraud/infer"),
        ("POST", "/v2/models/fraud/versions/3/infer"),
        ("POST", "/v1/models/fraud:predict?fail=input"),
        ("POST", "/v1/models/other:predict"),
        ("POST", "/v1/models/fraud:predict?fail=crash"),
    )
    assert codes == [200, 200, 200, 400, 404, 500]
    assert {code: count(registry, code) for code in ("200", "400", "404", "500")} == {
        "200": 3.0, "400": 1.0, "404": 1.0, "500": 1.0,
    }  # fmt: skip


def test_probes_metadata_and_scrapes_are_not_counted(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    """Health, readiness, metadata and /metrics calls would dilute the error rate: not counted."""
    codes = send(
        client,
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/fraud"),
        ("GET", "/metrics"),
        ("GET", "/v1/models/fraud:predict"),  # wrong method: FastAPI's 405, still an attempt
    )
    assert codes == [200, 200, 404, 405]
    assert registry.get_sample_value(f"{NAME}_count", {"code": "200"}) is None
    assert count(registry, "405") == 1.0


def test_an_answer_that_breaks_off_counts_as_a_server_error(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    """A stream that fails after its 200 was sent leaves the client without an answer: 500."""
    send(client, ("POST", "/v2/models/fraud/infer?fail=midway"))
    assert count(registry, "500") == 1.0
    assert count(registry, "200") == 0.0


def test_the_histogram_is_the_profiles_with_opentelemetry_buckets(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    """Seconds, OpenTelemetry's HTTP buckets, _count named as the sluice-wrapper profile's
    request counter, label code; each request here lasts 30 ms."""
    send(client, ("POST", "/v1/models/fraud:predict"))
    assert SLUICE_WRAPPER.requests == f"{NAME}_count"
    assert (SLUICE_WRAPPER.latency, SLUICE_WRAPPER.status_label) == (NAME, "code")
    buckets = {
        sample.labels["le"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{NAME}_bucket"
    }
    assert list(buckets) == [*(str(float(b)) for b in OTEL_BUCKETS_SECONDS), "+Inf"]
    assert (buckets["0.025"], buckets["0.05"]) == (0.0, 1.0)
    assert registry.get_sample_value(f"{NAME}_sum", {"code": "200"}) == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("path", "counted"),
    [
        ("/v1/models/fraud-detector:predict", True),
        ("/v2/models/fraud-detector/infer", True),
        ("/v2/models/fraud-detector/versions/7/infer", True),
        ("/v1/models/fraud-detector", False),
        ("/v2/models/fraud-detector/ready", False),
        ("/v1/models/fraud-detector:explain", False),
        ("/v2/health/live", False),
        ("/", False),
    ],
)
def test_inference_paths(path: str, counted: bool) -> None:
    """KServe's V1 and V2 inference routes, and nothing else."""
    assert bool(INFERENCE_PATH.match(path)) is counted
