"""Retraining asked for by drift alerts: grouped per model and environment, one per cool-down.

Alertmanager sends the feature and the prediction alert of one model separately, seconds apart,
repeats a firing alert and retries a delivery it thinks failed; each of those must not start a
training run, and the retraining that does start must know every drifted feature.
:class:`Retrainer` therefore works as Alertmanager's ``group_wait`` does: the first alert of a
(model, environment) opens a group, alerts arriving in the next ``group_seconds`` join it
(:func:`merge_requests`: the union of their features, the earliest ``since``), and when the
window closes one retraining starts. After it started, the pair's alerts are turned away until
``cooldown_seconds`` have passed.

State lives where the rest of Sluice's state is, in the registry, as tags on the registered
model, so a restarted ``sluice serve`` honours and shows what its previous process did:

- ``sluice.retrain.ENV.requested_at``: when the last retraining started (the cool-down);
- ``sluice.retrain.ENV.last``: the last retraining, as JSON (:class:`RetrainRecord`): when,
  why (alerts, features, since), its outcome (``grouping``, ``started``, ``succeeded``,
  ``gate-failed``, ``failed``) and the new version;
- ``sluice.retrain.ENV.turned_away``: the last alert turned away by the cool-down, as JSON.

``sluice status`` shows them, and each start, turn-away and outcome is announced through the
:class:`~controller.ports.Notifier` (a turn-away once per cool-down).

What "start" means is a :class:`~controller.ports.RetrainStarter`: :class:`ForgeRetrain`
sends the GitHub ``repository_dispatch`` of type ``retrain`` that the train workflow listens
for; :class:`~controller.backends.local_retrain.LocalRetrain` runs the training command with
the request in its environment (:func:`retrain_environment`) and reports its exit status to
:meth:`Retrainer.finished`. The workflow reports its own outcome back with ``sluice retrain
report`` (:func:`report_outcome`): the dispatch carries ``requested_at``, the ``at`` of the
record it started, so the report finishes that record and no other, and the record and the
notice are those :meth:`Retrainer.finished` makes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from controller.domain import RetrainRequest
from controller.errors import ConfigError, InputError
from controller.notify import NullNotifier
from controller.ports import Forge, ModelTagStore, Notifier, RetrainStarter

__all__ = [
    "DISPATCH_EVENT",
    "FINISHED_OUTCOMES",
    "NAME_PATTERN",
    "RETRAIN_ENVIRONMENT_VARIABLES",
    "ForgeRetrain",
    "RegistryCooldown",
    "RetrainOutcome",
    "RetrainRecord",
    "RetrainReport",
    "RetrainRequest",
    "Retrainer",
    "StampedStarter",
    "announce_outcome",
    "cooldown_remaining",
    "cooldown_tag",
    "describe_retraining",
    "dispatch_payload",
    "exit_outcome",
    "last_retrain_tag",
    "merge_requests",
    "render_command",
    "report_outcome",
    "retrain_environment",
    "turned_away_tag",
]

log = logging.getLogger("sluice.retrain")

#: The ``repository_dispatch`` type ``.github/workflows/train.yml`` listens for.
DISPATCH_EVENT = "retrain"
#: Model and environment names the train workflow accepts (it checks the same pattern).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: What the retrain command finds in its environment (none of them is a setting's variable).
RETRAIN_ENVIRONMENT_VARIABLES = (
    "SLUICE_RETRAIN_MODEL",
    "SLUICE_RETRAIN_ENVIRONMENT",
    "SLUICE_RETRAIN_SINCE",
    "SLUICE_DRIFTED_FEATURES",
    "SLUICE_DRIFTED_VERSION",
    "SLUICE_RETRAIN_REASON",
)
_RECORD_MAX_CHARS = 4000  # MLflow keeps at most 5,000 characters of a tag's value
_DETAIL_MAX_CHARS = 600

Outcome = Literal["grouping", "started", "succeeded", "gate-failed", "failed"]
#: The outcomes of a retraining that ran: what ``sluice retrain report --outcome`` accepts.
FINISHED_OUTCOMES: tuple[Outcome, ...] = ("succeeded", "gate-failed", "failed")


@dataclass(frozen=True)
class RetrainOutcome:
    """What became of a request: ``started``, ``grouped`` into a retraining about to start,
    turned away during the ``cooldown``, or ``failed`` to start (a grouped one, later)."""

    request: RetrainRequest
    result: Literal["started", "grouped", "cooldown", "failed"]
    detail: str


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _epoch(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def merge_requests(first: RetrainRequest, second: RetrainRequest) -> RetrainRequest:
    """One request for the alerts of both: features and alert names united in first-seen
    order, the earlier ``since``, the drifted version of the first that names one."""
    if (first.model, first.environment) != (second.model, second.environment):
        raise ValueError("only requests of one model and environment merge")
    stamps = [s for s in (first.since, second.since) if _epoch(s) is not None]
    since = min(stamps, key=lambda s: _epoch(s) or 0.0) if stamps else ""
    return RetrainRequest(
        first.model,
        first.environment,
        tuple(dict.fromkeys((*first.features, *second.features))),
        since=since,
        drifted_version=first.drifted_version or second.drifted_version,
        alerts=tuple(dict.fromkeys((*first.alerts, *second.alerts))),
    )


def retrain_environment(request: RetrainRequest) -> dict[str, str]:
    """The environment variables a retrain command gets: what to retrain and why."""
    return dict(
        zip(
            RETRAIN_ENVIRONMENT_VARIABLES,
            (
                request.model,
                request.environment,
                request.since,
                ",".join(request.features),
                request.drifted_version,
                ",".join(request.alerts),
            ),
            strict=True,
        )
    )


def dispatch_payload(request: RetrainRequest, requested_at: str = "") -> dict[str, object]:
    """The ``client_payload`` the train workflow reads: model, environment, features, since,
    and (from :class:`Retrainer`) ``requested_at``, the ``at`` of the record the workflow's
    ``sluice retrain report`` finishes."""
    payload: dict[str, object] = {
        "model": request.model,
        "environment": request.environment,
        "features": list(request.features),
        "since": request.since,
    }
    if requested_at:
        payload["requested_at"] = requested_at
    return payload


def cooldown_remaining(last_started: float | None, now: float, cooldown_seconds: float) -> float:
    """Seconds until another retraining may start (0: it may start now)."""
    if last_started is None:
        return 0.0
    return max(0.0, last_started + cooldown_seconds - now)


def cooldown_tag(environment: str) -> str:
    """The registered model's tag that holds when a retraining for ``environment`` started."""
    return f"sluice.retrain.{environment}.requested_at"


def last_retrain_tag(environment: str) -> str:
    """The registered model's tag that holds the last retraining for ``environment`` (JSON)."""
    return f"sluice.retrain.{environment}.last"


def turned_away_tag(environment: str) -> str:
    """The registered model's tag that holds the last alert the cool-down turned away (JSON)."""
    return f"sluice.retrain.{environment}.turned_away"


@dataclass(frozen=True)
class RetrainRecord:
    """A retraining (or an alert turned away) as the registry keeps it."""

    at: str
    outcome: str
    detail: str
    alerts: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    since: str = ""
    drifted_version: str = ""
    new_version: int | None = None
    finished_at: str = ""
    #: Where the retraining ran: the training command's log, the workflow run's URL.
    where: str = ""

    @classmethod
    def of(cls, request: RetrainRequest, at: float, outcome: str, detail: str) -> RetrainRecord:
        """A record of ``request`` at ``at`` (Unix time)."""
        return cls(
            at=_iso(at),
            outcome=outcome,
            detail=detail[:_DETAIL_MAX_CHARS],
            alerts=request.alerts,
            features=request.features,
            since=request.since,
            drifted_version=request.drifted_version,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (the tag's content, and ``status --json``'s)."""
        return {
            "at": self.at,
            "outcome": self.outcome,
            "detail": self.detail,
            "alerts": list(self.alerts),
            "features": list(self.features),
            "since": self.since,
            "driftedVersion": self.drifted_version,
            "newVersion": self.new_version,
            "finishedAt": self.finished_at,
            "where": self.where,
        }

    def encode(self) -> str:
        """The tag value: JSON, features cut (and counted) to fit MLflow's limit."""
        features = list(self.features)
        while True:
            data = self.to_json()
            data["features"] = features
            if len(features) < len(self.features):
                data["featuresOmitted"] = len(self.features) - len(features)
            text = json.dumps(data, separators=(",", ":"))
            if len(text) <= _RECORD_MAX_CHARS or not features:
                return text[:_RECORD_MAX_CHARS]
            features = features[: len(features) // 2]

    @classmethod
    def decode(cls, text: str | None) -> RetrainRecord | None:
        """The record in a tag value; None when there is none or it is unreadable."""
        if not text:
            return None
        try:
            data = json.loads(text)
            version = data.get("newVersion")
            return cls(
                at=str(data["at"]),
                outcome=str(data["outcome"]),
                detail=str(data.get("detail", "")),
                alerts=tuple(str(a) for a in data.get("alerts", ())),
                features=tuple(str(f) for f in data.get("features", ())),
                since=str(data.get("since", "")),
                drifted_version=str(data.get("driftedVersion", "")),
                new_version=int(version) if version is not None else None,
                finished_at=str(data.get("finishedAt", "")),
                where=str(data.get("where", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("ignoring an unreadable retraining record: %.200s", text)
            return None


def exit_outcome(code: int) -> tuple[Outcome, str]:
    """What the retrain command's exit status means (the training module's exit codes)."""
    if code == 0:
        return "succeeded", "trained and registered as challenger"
    if code == 1:
        return "gate-failed", "the new version failed the quality gate (exit 1)"
    if code == 2:
        return "failed", "bad data or arguments (exit 2)"
    if code == 3:
        return "failed", "the registry was unreachable (exit 3)"
    if code < 0:
        return "failed", f"killed by signal {-code}"
    return "failed", f"exited {code}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def describe_retraining(
    last: RetrainRecord | None, turned_away: RetrainRecord | None, now: float
) -> str:
    """One line for ``sluice status``: the last retraining, and a later turn-away."""
    parts: list[str] = []
    if last is not None:
        when = _ago(now - (_epoch(last.at) or now))
        why = ", ".join(last.alerts) or "asked for"
        features = ", ".join(last.features) or "no feature named"
        outcome = last.outcome
        if last.new_version is not None:
            outcome += f" → v{last.new_version}"
        text = f"{outcome} ({when}; {why}: {features}"
        text += f"; data since {last.since})" if last.since else ")"
        if last.outcome in ("grouping", "gate-failed", "failed"):
            text += f": {last.detail}"
        parts.append(text)
    if turned_away is not None and (last is None or turned_away.at >= last.at):
        when = _ago(now - (_epoch(turned_away.at) or now))
        why = ", ".join(turned_away.alerts) or "an alert"
        parts.append(f"turned away {why} {when}: {turned_away.detail}")
    return "; ".join(parts) or "-"


class RegistryCooldown:
    """A release's retraining state, kept as registry tags on the registered model."""

    def __init__(self, tags: ModelTagStore) -> None:
        self._tags = tags

    def read(self, model: str, environment: str) -> tuple[float | None, RetrainRecord | None]:
        """When a retraining last started (None if never) and the last turn-away record."""
        tags = self._tags.registered_model_tags(model)
        return (
            self._started(tags, model, environment),
            RetrainRecord.decode(tags.get(turned_away_tag(environment))),
        )

    def last_started(self, model: str, environment: str) -> float | None:
        """Unix time of the last start, None if never (or the tag is unreadable)."""
        return self._started(self._tags.registered_model_tags(model), model, environment)

    @staticmethod
    def _started(tags: Mapping[str, str], model: str, environment: str) -> float | None:
        text = tags.get(cooldown_tag(environment))
        if not text:
            return None
        when = _epoch(text)
        if when is None:
            log.warning(
                "ignoring tag %s=%r of %s: not a time", cooldown_tag(environment), text, model
            )
        return when

    def last_record(self, model: str, environment: str) -> RetrainRecord | None:
        """The last retraining of the pair."""
        tags = self._tags.registered_model_tags(model)
        return RetrainRecord.decode(tags.get(last_retrain_tag(environment)))

    def record(self, model: str, environment: str, when: float) -> None:
        """Remember that a retraining started at ``when`` (Unix time)."""
        self._tags.set_registered_model_tag(model, cooldown_tag(environment), _iso(when))

    def save(self, model: str, environment: str, record: RetrainRecord) -> None:
        """Keep ``record`` as the pair's last retraining."""
        self._tags.set_registered_model_tag(model, last_retrain_tag(environment), record.encode())

    def save_turned_away(self, model: str, environment: str, record: RetrainRecord) -> None:
        """Keep ``record`` as the pair's last alert turned away."""
        self._tags.set_registered_model_tag(model, turned_away_tag(environment), record.encode())


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
    ``group_seconds`` as one, and one per cool-down (see the module notes).

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
        request = replace(request, since=request.since or _iso(now))
        try:
            if isinstance(self.starter, StampedStarter):
                detail = self.starter.start_requested_at(request, _iso(now))
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
            record = _finish(base, outcome, detail, version=version, where=where, now=now)
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
        first = previous is None or (_epoch(previous.at) or 0.0) < started
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
    return _why_of(request.alerts, request.features)


def _why_of(alerts: Sequence[str], features: Sequence[str]) -> str:
    drifted = ", ".join(features) or "no feature named"
    return f"{', '.join(alerts) or 'a drift alert'} (drifted: {drifted})"


def _finish(
    base: RetrainRecord,
    outcome: Outcome,
    detail: str,
    *,
    version: int | None,
    where: str,
    now: float,
) -> RetrainRecord:
    """``base`` (the record the start wrote) finished with ``outcome``: the detail names
    where it ran, as the local path's names its log."""
    text = f"{detail}; {where}" if where else detail
    return replace(
        base,
        outcome=outcome,
        detail=text[:_DETAIL_MAX_CHARS],
        new_version=version,
        finished_at=_iso(now),
        where=where,
    )


def announce_outcome(
    notifier: Notifier, model: str, environment: str, record: RetrainRecord
) -> None:
    """The notice of a finished retraining (the same from the local path and the workflow)."""
    severity = {"succeeded": "success", "gate-failed": "warning"}.get(record.outcome, "error")
    if record.new_version is not None:
        result = f"v{record.new_version} is the challenger"
        if record.where:
            result += f"; {record.where}"
    else:
        result = record.detail
    notifier.notify(
        f"{model}: retraining for {environment} {record.outcome}",
        f"{_why_of(record.alerts, record.features)}. {result}",
        severity=severity,
    )


@dataclass(frozen=True)
class RetrainReport:
    """What a retraining that ran elsewhere (the train workflow) reports back.

    ``where`` is the workflow run's URL; ``requested_at`` the dispatch's ``requested_at`` (the
    ``at`` of the record it started; empty: the record in progress, whichever it is)."""

    model: str
    environment: str
    outcome: Outcome
    detail: str
    version: int | None = None
    where: str = ""
    requested_at: str = ""


def report_outcome(
    cooldown: RegistryCooldown, notifier: Notifier, report: RetrainReport, *, now: float
) -> tuple[RetrainRecord, bool]:
    """Finish the pair's retraining in progress with ``report``'s outcome and announce it, as
    :meth:`Retrainer.finished` does for a local one. Returns the record and whether it changed.

    Idempotent: the same report again (a re-run of the workflow's step, or of its job: one run
    URL) changes nothing and announces nothing; a re-run with another outcome updates the
    record. No record in progress, or one that is not the report's (``requested_at``), is an
    :class:`InputError` naming it and the fix, and nothing is written.
    """
    if report.outcome not in FINISHED_OUTCOMES:
        raise InputError(
            f"retraining outcome {report.outcome!r} is not one of {', '.join(FINISHED_OUTCOMES)}; "
            "give one of them (--outcome), or the training command's exit status (--exit-code)"
        )
    model, environment = report.model, report.environment
    tag = last_retrain_tag(environment)
    previous = cooldown.last_record(model, environment)
    if previous is None:
        raise InputError(
            f"no retraining of {model} for {environment} to report: its registered model has no "
            f"{tag} tag (sluice serve writes it when a drift alert starts one); report only a "
            "run that sluice serve's retrain dispatch started"
        )
    if report.requested_at:
        asked = _epoch(report.requested_at)
        if asked is None:
            raise InputError(
                f"--requested-at {report.requested_at!r} is not an ISO 8601 time; pass the "
                "dispatch's client_payload.requested_at"
            )
        if asked != _epoch(previous.at):
            raise InputError(
                f"the retraining of {model} for {environment} requested at "
                f"{report.requested_at} is not the last one ({previous.outcome}, requested at "
                f"{previous.at}, in {tag}): a later retraining replaced it, so nothing is "
                "recorded"
            )
    record = _finish(
        previous, report.outcome, report.detail, version=report.version, where=report.where,
        now=now,
    )  # fmt: skip
    # A finished record takes a report again only from the run that finished it (a re-run of
    # the step, or of the job: one run URL); the same result again changes nothing.
    same_run = previous.outcome in FINISHED_OUTCOMES and previous.where == report.where
    if same_run and _same_result(previous, record):
        return previous, False
    if previous.outcome != "started" and not (same_run and report.where):
        raise InputError(
            f"the last retraining of {model} for {environment} is not in progress: it is "
            f"{previous.outcome} since {previous.finished_at or previous.at} ({tag}); report "
            "only a run that sluice serve's retrain dispatch started, once"
        )
    cooldown.save(model, environment, record)
    announce_outcome(notifier, model, environment, record)
    return record, True


def _same_result(first: RetrainRecord, second: RetrainRecord) -> bool:
    return (first.outcome, first.detail, first.new_version, first.where) == (
        second.outcome,
        second.detail,
        second.new_version,
        second.where,
    )


@runtime_checkable
class StampedStarter(Protocol):
    """A starter whose retraining reports back on its own (the train workflow): it is told the
    ``at`` of the record :class:`Retrainer` keeps for the start, to pass along."""

    def start_requested_at(self, request: RetrainRequest, requested_at: str) -> str:
        """Start ``request`` as :meth:`~controller.ports.RetrainStarter.start` does, carrying
        ``requested_at`` (ISO 8601) to where the outcome is reported from."""
        ...


class ForgeRetrain:
    """Retrain through the forge: the ``retrain`` dispatch that the train workflow runs on."""

    def __init__(self, forge: Forge) -> None:
        self.forge = forge

    def start(self, request: RetrainRequest) -> str:
        """Send the dispatch; the workflow trains, registers and proposes."""
        return self.start_requested_at(request, "")

    def start_requested_at(self, request: RetrainRequest, requested_at: str) -> str:
        """Send the dispatch with ``requested_at``, which the workflow's ``sluice retrain
        report`` passes back, so its outcome lands on this retraining's record."""
        payload = dispatch_payload(request, requested_at)
        self.forge.dispatch(DISPATCH_EVENT, payload)
        return f"sent repository_dispatch {DISPATCH_EVENT} {payload}"


class _StrictValues(dict[str, str]):
    def __missing__(self, key: str) -> str:
        known = ", ".join(f"{{{name}}}" for name in sorted(self))
        raise ConfigError(f"retrain command names {{{key}}}; it may use {known}")


def render_command(template: Sequence[str], request: RetrainRequest) -> list[str]:
    """The retrain command for ``request``: each word of ``template`` with its placeholders
    (``{python}``, ``{module}``, ``{model}``, ``{environment}``, ``{features}``, ``{since}``,
    ``{drifted_version}``) filled in; an unknown placeholder is a :class:`ConfigError`."""
    if not template:
        raise ConfigError("the retrain command is empty: set retrain_command")
    values: Mapping[str, str] = _StrictValues(
        python=sys.executable,
        module=f"models.{request.model.replace('-', '_')}.train",
        model=request.model,
        environment=request.environment,
        features=",".join(request.features),
        since=request.since,
        drifted_version=request.drifted_version,
    )
    try:
        return [word.format_map(values) for word in template]
    except (ValueError, IndexError) as exc:  # a lone brace, a positional {0}
        raise ConfigError(
            f"retrain command {list(template)} is not a valid template: {exc}"
        ) from None
