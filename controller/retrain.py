"""Retraining asked for by drift alerts: at most one per model and environment per cool-down.

Alertmanager repeats a firing alert, sends the feature and the prediction alert of one model
separately, and retries a delivery it thinks failed; each of those must not start a training
run. :class:`Retrainer` lets one retraining of a (model, environment) start and turns away the
rest until ``cooldown_seconds`` have passed. The cool-down is kept where the rest of Sluice's
state is, in the registry: a tag ``sluice.retrain.ENVIRONMENT.requested_at`` on the registered
model (an ISO 8601 time, readable in MLflow's UI), so a restarted ``sluice serve`` honours a
retraining its previous process started. A copy in memory covers a registry write that failed
after the retraining had started.

What "start" means is a :class:`~controller.ports.RetrainStarter`: :class:`ForgeRetrain`
sends the GitHub ``repository_dispatch`` of type ``retrain`` that the train workflow listens
for; :class:`~controller.backends.local_retrain.LocalRetrain` runs the training module.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from controller.errors import ConfigError
from controller.ports import Forge, ModelTagStore, RetrainStarter

__all__ = [
    "DISPATCH_EVENT",
    "NAME_PATTERN",
    "ForgeRetrain",
    "RegistryCooldown",
    "RetrainOutcome",
    "RetrainRequest",
    "Retrainer",
    "cooldown_remaining",
    "cooldown_tag",
    "dispatch_payload",
    "render_command",
]

log = logging.getLogger("sluice.retrain")

#: The ``repository_dispatch`` type ``.github/workflows/train.yml`` listens for.
DISPATCH_EVENT = "retrain"
#: Model and environment names the train workflow accepts (it checks the same pattern).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class RetrainRequest:
    """Retrain ``model`` for ``environment``, because these features drifted."""

    model: str
    environment: str
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrainOutcome:
    """What became of a request: ``started``, or turned away during the ``cooldown``."""

    request: RetrainRequest
    result: Literal["started", "cooldown"]
    detail: str


def dispatch_payload(request: RetrainRequest) -> dict[str, object]:
    """The ``client_payload`` the train workflow reads: model, environment, features."""
    return {
        "model": request.model,
        "environment": request.environment,
        "features": list(request.features),
    }


def cooldown_remaining(last_started: float | None, now: float, cooldown_seconds: float) -> float:
    """Seconds until another retraining may start (0: it may start now)."""
    if last_started is None:
        return 0.0
    return max(0.0, last_started + cooldown_seconds - now)


def cooldown_tag(environment: str) -> str:
    """The registered model's tag that holds when a retraining for ``environment`` started."""
    return f"sluice.retrain.{environment}.requested_at"


class RegistryCooldown:
    """When a retraining of (model, environment) last started, kept as a registry tag."""

    def __init__(self, tags: ModelTagStore) -> None:
        self._tags = tags

    def last_started(self, model: str, environment: str) -> float | None:
        """Unix time of the last start, None if never (or the tag is unreadable)."""
        text = self._tags.registered_model_tags(model).get(cooldown_tag(environment))
        if not text:
            return None
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            log.warning(
                "ignoring tag %s=%r of %s: not a time", cooldown_tag(environment), text, model
            )
            return None

    def record(self, model: str, environment: str, when: float) -> None:
        """Remember that a retraining started at ``when`` (Unix time)."""
        stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
        self._tags.set_registered_model_tag(model, cooldown_tag(environment), stamp)


class Retrainer:
    """Starts retrainings through ``starter``, one per (model, environment) per cool-down.

    Safe to call from several request threads: the check and the start happen under one lock,
    so two alerts arriving together start one retraining.
    """

    def __init__(
        self,
        starter: RetrainStarter,
        cooldown: RegistryCooldown,
        *,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.starter = starter
        self.cooldown = cooldown
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], float] = {}

    def request(self, request: RetrainRequest) -> RetrainOutcome:
        """Start a retraining unless one started within the cool-down.

        Raises what the registry or the starter raise (the caller answers 5xx, and Alertmanager
        delivers again); nothing is recorded for a retraining that did not start.
        """
        key = (request.model, request.environment)
        with self._lock:
            now = self._clock()
            stored = self.cooldown.last_started(*key)
            known = [t for t in (stored, self._started.get(key)) if t is not None]
            last = max(known) if known else None
            remaining = cooldown_remaining(last, now, self.cooldown_seconds)
            if last is not None and remaining > 0:
                detail = (
                    f"a retraining started {now - last:.0f} s ago; "
                    f"the next may start in {remaining:.0f} s"
                )
                return RetrainOutcome(request, "cooldown", detail)
            detail = self.starter.start(request.model, request.environment, request.features)
            self._started[key] = now
            try:
                self.cooldown.record(request.model, request.environment, now)
            except Exception as exc:  # the retraining runs; this process still remembers it
                log.error("retraining of %s/%s started but not recorded: %s", *key, exc)
            return RetrainOutcome(request, "started", detail)


class ForgeRetrain:
    """Retrain through the forge: the ``retrain`` dispatch that the train workflow runs on."""

    def __init__(self, forge: Forge) -> None:
        self.forge = forge

    def start(self, model: str, environment: str, features: tuple[str, ...]) -> str:
        """Send the dispatch; the workflow trains, registers and proposes."""
        payload = dispatch_payload(RetrainRequest(model, environment, features))
        self.forge.dispatch(DISPATCH_EVENT, payload)
        return f"sent repository_dispatch {DISPATCH_EVENT} {payload}"


class _StrictValues(dict[str, str]):
    def __missing__(self, key: str) -> str:
        known = ", ".join(f"{{{name}}}" for name in sorted(self))
        raise ConfigError(f"retrain command names {{{key}}}; it may use {known}")


def render_command(template: Sequence[str], request: RetrainRequest) -> list[str]:
    """The retrain command for ``request``: each word of ``template`` with its placeholders
    (``{python}``, ``{module}``, ``{model}``, ``{environment}``, ``{features}``) filled in;
    an unknown placeholder is a :class:`ConfigError`."""
    if not template:
        raise ConfigError("the retrain command is empty: set retrain_command")
    values: Mapping[str, str] = _StrictValues(
        python=sys.executable,
        module=f"models.{request.model.replace('-', '_')}.train",
        model=request.model,
        environment=request.environment,
        features=",".join(request.features),
    )
    try:
        return [word.format_map(values) for word in template]
    except (ValueError, IndexError) as exc:  # a lone brace, a positional {0}
        raise ConfigError(
            f"retrain command {list(template)} is not a valid template: {exc}"
        ) from None
