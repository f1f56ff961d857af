"""The model server names its Knative revision in ``X-Sluice-Revision`` on every answer.

A graph's router labels each step call with the member revision that answered, read from that
header (:mod:`controller.local.graph_caller`); on a cluster Sluice's model server adds it from
``K_REVISION``. The app is a small FastAPI app shaped like kserve's (its exception handlers,
Sluice's request-metrics middleware), so no model is loaded.
"""

from __future__ import annotations

import asyncio

import fastapi
import httpx
import pytest
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from controller.local.serving.request_metrics import RequestMetrics, request_histogram
from controller.local.serving.revision_header import answer_with_revision


class InvalidInput(Exception):
    """Stands in for kserve.errors.InvalidInput, which kserve answers with 400."""


def kserve_like_app(revision: str | None) -> fastapi.FastAPI:
    app = fastapi.FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, fail: str = "") -> JSONResponse:
        if fail == "input":
            raise InvalidInput("bad instances")
        if fail == "crash":
            raise RuntimeError("the model crashed")
        return JSONResponse({"predictions": [0.1]}, headers={"X-Sluice-Revision": "stale"})

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    async def invalid_input(request: fastapi.Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    async def generic(request: fastapi.Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"{type(exc).__name__} : {exc}"}, 500)

    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(Exception, generic)  # Starlette's outermost error middleware's
    app.add_middleware(RequestMetrics, histogram=request_histogram(CollectorRegistry()))
    answer_with_revision(app, revision)
    return app


def answers(app: fastapi.FastAPI, *paths: str) -> list[tuple[int, list[str]]]:
    async def run() -> list[tuple[int, list[str]]]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            got = []
            for path in paths:
                method = "GET" if "health" in path else "POST"
                response = await client.request(method, path, json={"instances": [[1]]})
                got.append((response.status_code, response.headers.get_list("x-sluice-revision")))
            return got

    return asyncio.run(run())


PATHS = (
    "/v1/models/fraud:predict",
    "/v1/models/fraud:predict?fail=input",
    "/v1/models/fraud:predict?fail=crash",
    "/no/such/route",
    "/v2/health/ready",
)


def test_every_answer_names_the_revision_errors_included() -> None:
    """200, a handler's 400, the generic handler's 500 (answered outside the app's own
    middleware), a 404 and a probe: each carries the revision once, replacing one the app set."""
    got = answers(kserve_like_app("fraud-predictor-00002"), *PATHS)
    assert got == [
        (200, ["fraud-predictor-00002"]),
        (400, ["fraud-predictor-00002"]),
        (500, ["fraud-predictor-00002"]),
        (404, ["fraud-predictor-00002"]),
        (200, ["fraud-predictor-00002"]),
    ]


@pytest.mark.parametrize("revision", [None, ""])
def test_without_k_revision_nothing_is_added(revision: str | None) -> None:
    """Outside Knative (RawDeployment, a local process) the answers are the app's own."""
    got = answers(kserve_like_app(revision), *PATHS)
    assert got == [(200, ["stale"]), (400, []), (500, []), (404, []), (200, [])]
