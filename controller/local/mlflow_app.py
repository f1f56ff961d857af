"""The MLflow tracking server in one process: what ``mlflow server`` runs, without its launcher.

``mlflow server`` imports MLflow (about 3 s) only to check its options, create the stores'
tables and build a ``uvicorn`` command line; uvicorn then starts a second Python that imports
MLflow again to serve ``mlflow.server.fastapi_app:app``. The launcher stays alive as its
parent, holding about 280 MB for nothing. This module does the launcher's work in the process
that serves: it sets the server's environment as the CLI does (backend and registry store,
proxied artifacts with their destination, one server generation id), creates the tables, and
runs the same ASGI app in uvicorn with one worker. ``benchmarks/mlflow_start.py`` measures both.

Run it as ``python -m controller.local.mlflow_app --host H --port P --backend-store-uri URI
--artifacts-destination DIR``; :func:`controller.local.services.start_mlflow` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

__all__ = ["main"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m controller.local.mlflow_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-store-uri", required=True)
    parser.add_argument("--artifacts-destination", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Create the stores' tables, then serve MLflow's ASGI app until SIGTERM or SIGINT."""
    args = _parse(argv)
    from mlflow.server import constants
    from mlflow.server.handlers import initialize_backend_stores

    # `mlflow server --serve-artifacts` (the default) resolves the artifact root this way.
    artifact_root = "mlflow-artifacts:/"
    os.environ.update(
        {
            constants.BACKEND_STORE_URI_ENV_VAR: args.backend_store_uri,
            constants.REGISTRY_STORE_URI_ENV_VAR: args.backend_store_uri,
            constants.ARTIFACT_ROOT_ENV_VAR: artifact_root,
            constants.SERVE_ARTIFACTS_ENV_VAR: "true",
            constants.ARTIFACTS_DESTINATION_ENV_VAR: args.artifacts_destination,
            # What the CLI sets for its workers: a server generation id, not a job executor,
            # served by uvicorn.
            "_MLFLOW_SERVER_BOOT_ID": uuid.uuid4().hex,
            "_MLFLOW_IN_JOB_EXECUTOR": "false",
            "_MLFLOW_SGI_NAME": "uvicorn",
        }
    )
    initialize_backend_stores(args.backend_store_uri, args.backend_store_uri, artifact_root)
    import uvicorn

    uvicorn.run(
        "mlflow.server.fastapi_app:app",
        host=args.host,
        port=args.port,
        workers=1,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
