"""Register a faulty version of a model: ``python -m models.faulty.register``.

``--base-model fraud-detector --base-version 2 --error-rate 0.2 --latency-ms 300`` logs a model
that answers as version 2 does but fails 20 % of requests and takes 300 ms longer, with the same
signature, and registers it as the next version of ``--model-name`` (default: the base model).
It prints the new version number. Exit codes as for training: 2 bad input, 3 registry
unreachable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from controller.backends.mlflow_registry import (
    MlflowRegistry,
    configure_mlflow_http,
    registry_errors,
)
from controller.errors import SluiceError
from controller.redact import redact
from controller.settings import load_settings
from models.pinned_requirements import pinned

__all__ = ["main", "register_faulty"]

MODEL_CODE = Path(__file__).with_name("faulty_model.py")


def register_faulty(
    *,
    base_model: str,
    base_version: int,
    model_name: str,
    error_rate: float,
    latency_ms: float,
    seed: int,
) -> int:
    """Log the faulty model around ``base_model`` version ``base_version``; return its version."""
    import mlflow
    import mlflow.models
    import mlflow.pyfunc

    settings = load_settings()
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The signature is the base model's; no input example is needed to serve it.
    warnings.filterwarnings("ignore", message=".*input example was not provided")
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    base_uri = f"models:/{base_model}/{base_version}"
    config = {"error_rate": error_rate, "latency_ms": latency_ms, "seed": seed}
    tags = {
        "sluice.faulty": f"error_rate={error_rate:g} latency_ms={latency_ms:g} seed={seed}",
        "sluice.faulty_base": f"{base_model}/{base_version}",
    }
    with registry_errors(settings.mlflow_tracking_uri, f"version {base_version} of {base_model!r}"):
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(settings.mlflow_tracking_uri)
        signature = mlflow.models.get_model_info(base_uri).signature
        mlflow.set_experiment(model_name)
        with mlflow.start_run(run_name=f"faulty {base_model}/{base_version}") as run:
            mlflow.log_params({"faulty_base": base_uri, **config})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"base_model": base_uri},
                model_config=config,
                signature=signature,
                # Declared, not inferred: inferring loads the model in a subprocess (~4 s).
                pip_requirements=pinned(),
            )
    return registry.register(model_name, str(info.model_uri), run.info.run_id, tags).version


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and an exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m models.faulty.register", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--base-model", required=True, help="registered model to wrap")
    parser.add_argument("--base-version", type=int, required=True, help="its version")
    parser.add_argument("--model-name", help="register under this name (default: base model)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests failing")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0 or args.latency_ms < 0:
        parser.error("--error-rate must be in [0, 1] and --latency-ms at least 0")
    try:
        version = register_faulty(
            base_model=args.base_model,
            base_version=args.base_version,
            model_name=args.model_name or args.base_model,
            error_rate=args.error_rate,
            latency_ms=args.latency_ms,
            seed=args.seed,
        )
    except SluiceError as exc:
        sys.stderr.write(f"register: error: {redact(exc.message)}\n")
        return int(exc.exit_code)
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
