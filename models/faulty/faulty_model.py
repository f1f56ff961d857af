"""The faulty pyfunc, logged as MLflow "model from code": this file is stored with the model.

Being code rather than a pickle, the artifact loads anywhere MLflow does, with no import of
this repository. ``model_config`` carries ``error_rate``, ``latency_ms`` and ``seed``; the
artifact ``base_model`` is the wrapped version, copied into the model at logging time.
Failures are drawn from a generator seeded with ``seed``, so a run of requests fails the same
way every time; latency is added to every request, failing or not.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import mlflow.pyfunc
from mlflow.models import set_model


class InjectedFailure(RuntimeError):
    """The failure this model was built to produce."""


class FaultyModel(mlflow.pyfunc.PythonModel):
    """Predict as the base model does, but slowly and sometimes not at all."""

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.error_rate = float(config.get("error_rate", 0.0))
        self.latency_s = float(config.get("latency_ms", 0.0)) / 1000.0
        self._random = random.Random(int(config.get("seed", 0)))  # noqa: S311 (not crypto)
        self._lock = threading.Lock()  # requests arrive on several threads
        self._base = mlflow.pyfunc.load_model(context.artifacts["base_model"])

    # No type hints: MLflow 3 would read them as a second, conflicting signature.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        with self._lock:
            draw = self._random.random()
        if self.latency_s:
            time.sleep(self.latency_s)
        if draw < self.error_rate:
            raise InjectedFailure(f"injected failure (error rate {self.error_rate:g})")
        return self._base.predict(model_input)


set_model(FaultyModel())
