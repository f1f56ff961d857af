"""Retraining on this machine: the training module as a process, when there is no forge.

With ``--forge local`` there is no GitHub workflow to dispatch to, so ``sluice serve`` runs what the
workflow would: the model's training module (``python -m models.MODEL.train``), which trains,
validates and registers a version with the ``challenger`` alias, and the watch loop proposes it like
any other. The command is a template (setting ``retrain_command``), so a team points it at its own
entry point and data; what to retrain on is in its environment as well (``SLUICE_RETRAIN_SINCE``,
``SLUICE_DRIFTED_FEATURES``…, :func:`controller.retrain.command.retrain_environment`). The process
is not waited for: it runs detached (its own session, so a ``sluice serve`` stopped with Ctrl-C does
not kill a training half done), writes its output to a log file per run, and a daemon thread reaps
it, logs its exit status and hands it to ``on_exit``
(:meth:`controller.retrain.retrainer.Retrainer.finished` records and announces it).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from controller.domain import RetrainRequest
from controller.errors import ConfigError
from controller.retrain.command import render_command, retrain_environment

#: Called when a retraining's process ended: the request, its exit status, its log file.
ExitHandler = Callable[[RetrainRequest, int, Path], None]

__all__ = ["LocalRetrain"]

log = logging.getLogger("sluice.retrain")


class LocalRetrain:
    """A :class:`~controller.ports.RetrainStarter` that runs ``command`` in ``cwd``."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_dir: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_exit: ExitHandler | None = None,
    ) -> None:
        render_command(command, RetrainRequest("model", "environment"))  # fail at start, not later
        self.command = list(command)
        self.log_dir = log_dir
        self.cwd = cwd
        self.env = dict(env or {})
        self.on_exit = on_exit
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, request: RetrainRequest) -> str:
        """Start the command for ``request``; returns what runs and where it logs."""
        model, environment = request.model, request.environment
        argv = render_command(self.command, request)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        log_path = self.log_dir / f"retrain-{model}-{environment}-{stamp}.log"
        with log_path.open("ab") as output:
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=self.cwd,
                    env={**os.environ, **self.env, **retrain_environment(request)},
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot run the retrain command {argv[0]!r} ({exc.strerror}); "
                    "fix retrain_command"
                ) from None
        self.started.append(process)
        threading.Thread(
            target=_reap, args=(process, request, log_path, self.on_exit), daemon=True
        ).start()
        return f"started {' '.join(argv)} (pid {process.pid}), log {log_path}"


def _reap(
    process: subprocess.Popen[bytes],
    request: RetrainRequest,
    log_path: Path,
    on_exit: ExitHandler | None,
) -> None:
    code = process.wait()
    model, environment = request.model, request.environment
    if code == 0:
        log.info("retraining of %s for %s finished", model, environment)
    else:
        log.warning(
            "retraining of %s for %s exited %d (1: quality gate failed); see %s",
            model,
            environment,
            code,
            log_path,
        )
    if on_exit is not None:
        try:
            on_exit(request, code, log_path)
        except Exception:  # a daemon thread: say so rather than die silently
            log.exception("recording the end of the retraining of %s failed", model)
