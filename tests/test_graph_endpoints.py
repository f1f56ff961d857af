"""The URL KServe's controller gives a graph's serviceName step: the predictor endpoint."""

from __future__ import annotations

from support.graph_members import isvc_object
from support.graph_samples import ENSEMBLE_SAMPLE

from controller.local.graph.endpoints import (
    Resolution,
    predictor_endpoint,
    resolve_service_urls,
)
from controller.local.graph.spec import parse_inference_graph


def test_v1_endpoint_is_the_address_and_the_models_predict_path() -> None:
    """``status.address.url`` + ``/v1/models/<name>:predict`` (V1, the default)."""
    obj = isvc_object("sklearn-iris", "http://127.0.0.1:5001/")
    assert predictor_endpoint(obj) == "http://127.0.0.1:5001/v1/models/sklearn-iris:predict"


def test_v2_endpoint_is_the_infer_path() -> None:
    """``protocolVersion: v2`` calls ``/v2/models/<name>/infer``."""
    obj = isvc_object("iris", "http://h")
    obj["spec"]["predictor"]["model"]["protocolVersion"] = "v2"
    assert predictor_endpoint(obj) == "http://h/v2/models/iris/infer"


def test_no_address_no_endpoint() -> None:
    """An InferenceService that has never been ready has no endpoint."""
    assert predictor_endpoint(isvc_object("iris", "")) == ""


def test_resolution_stops_at_the_first_service_it_cannot_resolve() -> None:
    """KServe's two errors, in step order; every URL once all resolve."""
    graph = parse_inference_graph(ENSEMBLE_SAMPLE)
    sklearn = isvc_object("sklearn-iris", "http://a")
    assert resolve_service_urls(graph, {}) == Resolution(
        problem="Failed to find graph service sklearn-iris"
    )
    pending = {"sklearn-iris": sklearn, "xgboost-iris": isvc_object("xgboost-iris", "")}
    assert resolve_service_urls(graph, pending).problem == "service xgboost-iris is not ready"
    ready = {**pending, "xgboost-iris": isvc_object("xgboost-iris", "http://b")}
    assert resolve_service_urls(graph, ready).urls == {
        "sklearn-iris": "http://a/v1/models/sklearn-iris:predict",
        "xgboost-iris": "http://b/v1/models/xgboost-iris:predict",
    }
