"""``mlflow server`` in one process: ``python -m controller.local.mlflow_server [mlflow server
flags]``.

``mlflow server`` imports MLflow (about 2.5 s of CPU and 280 MB), checks its flags, prepares
the backend store, and then starts uvicorn in a second Python process that imports MLflow
again and serves the tracking API. This entry point runs MLflow's own ``server`` command, so
every flag, check and store migration is MLflow's, and only replaces its last step: uvicorn
runs in this process, on the environment MLflow computed for it, and reuses the stores the
command already opened. A stack then holds one MLflow process instead of two.

When the command MLflow builds is not the uvicorn command this module knows (another MLflow
release, gunicorn or waitress options), MLflow starts its server process as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

__all__ = ["main"]


def _uvicorn_in_process(start_process: Callable[..., Any]) -> Callable[..., Any]:
    """MLflow's ``_exec_cmd``, except that the uvicorn server it would start in a subprocess
    runs here and this process exits with it."""

    def start(cmd: Sequence[str], *args: Any, extra_env: Mapping[str, str] | None = None,
              **kwargs: Any) -> Any:  # fmt: skip
        if list(cmd[:3]) != [sys.executable, "-m", "uvicorn"]:
            return start_process(cmd, *args, extra_env=extra_env, **kwargs)
        os.environ.update(extra_env or {})
        from uvicorn.main import main as uvicorn_main

        uvicorn_main.main(args=list(cmd[3:]), prog_name="uvicorn")  # exits when it stops
        raise SystemExit(0)

    return start


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``mlflow server`` with ``argv`` (default: this process's arguments)."""
    import mlflow.server
    from mlflow.cli import cli

    known = getattr(mlflow.server, "_exec_cmd", None)
    if callable(known):
        mlflow.server._exec_cmd = _uvicorn_in_process(known)  # type: ignore[attr-defined]
    arguments = list(sys.argv[1:] if argv is None else argv)
    cli.main(args=["server", *arguments], prog_name="mlflow")
    raise SystemExit(0)


if __name__ == "__main__":
    main()
