"""Answers the router would hand a prediction log, for the tests that seed one.

``tests/test_prediction_store_contract.py`` holds SQLite's log and the in-memory fake to one
behaviour with them, ``tests/test_prediction_log.py`` tests what only SQLite's log does
(rotation on disk, restarts, a killed writer), and ``tests/test_feedback.py`` seeds the log
that ``sluice feedback`` labels.
"""

from __future__ import annotations

import json

from controller.ports import PredictionSink
from controller.predictions import Prediction

__all__ = ["answer", "both"]


def answer(
    request_id: str,
    role: str = "primary",
    *,
    score: float = 0.5,
    body: bytes = b'{"instances": [[1, 2]]}',
    model: str = "fraud",
    revision: str = "",
    when: float = 1000.0,
    output: bytes | None = None,
) -> Prediction:
    """The primary's (version 1, revision r1) or the shadow's (version 2, r2) answer to one
    request: ``{"predictions": [score]}`` unless ``output`` is given, status 200, 3 ms."""
    revision = revision or ("r1" if role == "primary" else "r2")
    if output is None:
        output = json.dumps({"predictions": [score]}).encode()
    return Prediction(
        request_id, when, model, "1" if role == "primary" else "2", revision, role,  # type: ignore[arg-type]
        body, 200, output, 3.0,
    )  # fmt: skip


def both(log: PredictionSink, request_id: str, **fields: object) -> None:
    """Log the primary's and the shadow's answers to one request."""
    log.record(answer(request_id, **fields))  # type: ignore[arg-type]
    log.record(answer(request_id, "shadow", **fields))  # type: ignore[arg-type]
