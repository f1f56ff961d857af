"""Starts retrainings: a pair's alerts within the group window as one, one per cool-down.

See :mod:`controller.retrain` for how grouping and the cool-down work and where their state
lives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

from controller.domain import RetrainRequest
from controller.notify import NullNotifier
from controller.ports import Notifier, RetrainStarter
from controller.retrain.grouping import cooldown_remaining, merge_requests
from controller.retrain.record import (
    RetrainRecord,
    exit_outcome,
    iso_time,
    parse_time,
    retrain_reason,
)
from controller.retrain.registry_state import RegistryCooldown
from controller.retrain.report import announce_outcome

__all__ = ["RetrainOutcome", "Retrainer", "StampedStarter"]

log = logging.getLogger("sluice.retrain")


@dataclass(frozen=True)
class RetrainOutcome:
    """What became of a request: ``started``, ``grouped`` into a retraining about to start,
    turned away during the ``cooldown``, or ``failed`` to start (a grouped one, later)."""

    request: RetrainRequest
    result: Literal["started", "grouped", "cooldown", "failed"]
    detail: str


@runtime_checkable
class StampedStarter(Protocol):
    """A starter whose retraining reports back on its own (the train workflow): it is told the
    ``at`` of the record :class:`Retrainer` keeps for the start, to pass along."""

    def start_requested_at(self, request: RetrainRequest, requested_at: str) -> str:
        """Start ``request`` as :meth:`~controller.ports.RetrainStarter.start` does, carrying
        ``requested_at`` (ISO 8601) to where the outcome is reported from."""
        ...


@dataclass
class _Group:
    request: RetrainRequest
    opened_at: float


def _timer(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


class Retrainer:
    """Starts retrainings through ``starter``: the alerts of a (model, environment) within
    ``group_seconds`` as one, and one per cool-down (see :mod:`controller.retrain`).

    Safe to call from several request threads and the group timers: every decision and start
    happens under one lock, so alerts arriving together start one retraining. With
    ``group_seconds`` 0 a retraining starts on the request that asks for it.
    """

    def __init__(
        self,
        starter: RetrainStarter,
        cooldown: RegistryCooldown,
        *,
        cooldown_seconds: float,
        group_seconds: float = 0.0,
        notifier: Notifier | None = None,
        observer: Callable[[RetrainOutcome], None] | None = None,
        challenger: Callable[[str], int | None] | None = None,
        clock: Callable[[], float] = time.time,
        schedule: Callable[[float, Callable[[], None]], None] = _timer,
    ) -> None:
        self.starter = starter
        self.cooldown = cooldown
        self.cooldown_seconds = cooldown_seconds
        self.group_seconds = group_seconds
        self.notifier = notifier or NullNotifier()
        self._observer = observer
        self._challenger = challenger
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], float] = {}
        self._groups: dict[tuple[str, str], _Group] = {}

    def request(self, request: RetrainRequest) -> RetrainOutcome:
        """Group, start or turn away a retraining (see the class notes).

        Raises what the registry or the starter raise (the caller answers 5xx, and Alertmanager
        delivers again); nothing is recorded for a retraining that did not start.
        """
        key = (request.model, request.environment)
        with self._lock:
            now = self._clock()
            group = self._groups.get(key)
            if group is not None:
                group.request = merge_requests(group.request, request)
                left = group.opened_at + self.group_seconds - now
                return RetrainOutcome(
                    group.request, "grouped", f"joins the retraining that starts in {left:.0f} s"
                )
            stored, turned_away = self.cooldown.read(*key)
            known = [t for t in (stored, self._started.get(key)) if t is not None]
            last = max(known) if known else None
            remaining = cooldown_remaining(last, now, self.cooldown_seconds)
            if last is not None and remaining > 0:
                detail = (
                    f"a retraining started {now - last:.0f} s ago; "
                    f"the next may start in {remaining:.0f} s"
                )
                self._turn_away(request, now, last, turned_away, detail)
                return RetrainOutcome(request, "cooldown", detail)
            if self.group_seconds <= 0:
                return self._start(request, now)
            detail = (
                f"waiting {self.group_seconds:g} s for the other drift alerts of "
                f"{request.model} in {request.environment}"
            )
            self.cooldown.save(*key, RetrainRecord.of(request, now, "grouping", detail))
            self._groups[key] = _Group(request, now)
            self._schedule(self.group_seconds, lambda: self._close_quietly(key))
            return RetrainOutcome(request, "grouped", detail)

    def flush(self) -> list[RetrainOutcome]:
        """Start every group whose window has closed (the timers call this per group)."""
        with self._lock:
            now = self._clock()
            due = [k for k, g in self._groups.items() if g.opened_at + self.group_seconds <= now]
        return [outcome for key in due for outcome in self._close(key)]

    def pending(self) -> dict[tuple[str, str], RetrainRequest]:
        """The open groups and what each would retrain for now."""
        with self._lock:
            return {key: group.request for key, group in self._groups.items()}

    def _close_quietly(self, key: tuple[str, str]) -> None:
        self._close(key)

    def _close(self, key: tuple[str, str]) -> list[RetrainOutcome]:
        with self._lock:
            group = self._groups.pop(key, None)
            if group is None:
                return []
            now = self._clock()
            try:
                outcome = self._start(group.request, now)
            except Exception as exc:  # no request to fail: the record and the notice say it
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                outcome = RetrainOutcome(group.request, "failed", str(message))
        if self._observer is not None:
            self._observer(outcome)
        return [outcome]

    def _start(self, request: RetrainRequest, now: float) -> RetrainOutcome:
        key = (request.model, request.environment)
        request = replace(request, since=request.since or iso_time(now))
        try:
            if isinstance(self.starter, StampedStarter):
                detail = self.starter.start_requested_at(request, iso_time(now))
            else:
                detail = self.starter.start(request)
        except Exception as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self._save(request, RetrainRecord.of(request, now, "failed", str(message)))
            self.notifier.notify(
                f"{request.model}: retraining for {request.environment} did not start",
                f"{_why(request)}. {message}",
                severity="error",
            )
            raise
        self._started[key] = now
        try:
            self.cooldown.record(request.model, request.environment, now)
        except Exception as exc:  # the retraining runs; this process still remembers it
            log.error("retraining of %s/%s started but not recorded: %s", *key, exc)
        self._save(request, RetrainRecord.of(request, now, "started", detail))
        self.notifier.notify(
            f"{request.model}: retraining for {request.environment} started",
            f"{_why(request)}; training on data since {request.since}.",
        )
        return RetrainOutcome(request, "started", detail)

    def finished(self, request: RetrainRequest, code: int, where: str = "") -> RetrainRecord:
        """The retraining of ``request`` ended with exit status ``code``: record and announce
        its outcome (the new challenger version when it succeeded)."""
        outcome, detail = exit_outcome(code)
        version = None
        if outcome == "succeeded" and self._challenger is not None:
            try:
                version = self._challenger(request.model)
            except Exception as exc:
                log.warning("cannot read %s's challenger: %s", request.model, exc)
        with self._lock:
            now = self._clock()
            try:
                previous = self.cooldown.last_record(request.model, request.environment)
            except Exception as exc:
                log.warning("cannot read the retraining record of %s: %s", request.model, exc)
                previous = None
            base = previous or RetrainRecord.of(request, now, outcome, detail)
            record = base.finish(outcome, detail, version=version, where=where, now=now)
            self._save(request, record)
        announce_outcome(self.notifier, request.model, request.environment, record)
        return record

    def _turn_away(
        self,
        request: RetrainRequest,
        now: float,
        started: float,
        previous: RetrainRecord | None,
        detail: str,
    ) -> None:
        record = RetrainRecord.of(request, now, "turned-away", detail)
        try:
            self.cooldown.save_turned_away(request.model, request.environment, record)
        except Exception as exc:
            log.warning(
                "turn-away of %s/%s not recorded: %s", request.model, request.environment, exc
            )
        # Announced once per cool-down: Alertmanager repeats a firing alert all along.
        first = previous is None or (parse_time(previous.at) or 0.0) < started
        if first:
            self.notifier.notify(
                f"{request.model}: drift alert for {request.environment} turned away",
                f"{_why(request)}. {detail} (retrain_cooldown_seconds).",
                severity="warning",
            )

    def _save(self, request: RetrainRequest, record: RetrainRecord) -> None:
        try:
            self.cooldown.save(request.model, request.environment, record)
        except Exception as exc:  # what happened is still logged and announced
            log.error(
                "retraining record of %s/%s not saved: %s", request.model, request.environment, exc
            )


def _why(request: RetrainRequest) -> str:
    return retrain_reason(request.alerts, request.features)
