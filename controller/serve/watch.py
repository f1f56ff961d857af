"""The loop of ``sluice serve``: notice when a registry alias moves, and hand the change on.

Polling is the dependable path. Every ``interval_seconds`` the watcher asks the registry which
version each watched alias points at and calls ``on_change(watched, version)`` when the answer
differs from the last version ``on_change`` accepted. MLflow's registry webhooks are
experimental and fire-and-forget (retried only on 429/5xx), so a webhook only makes the loop
faster: :meth:`Watcher.trigger` wakes it for one model+alias at once, and the registry, not the
delivery, says which version is current (deliveries may arrive late or out of order).

The first look at each alias calls ``on_change`` too. That is safe because the proposal step
is idempotent: when the manifest already names the version it commits nothing, and when a
previous process died half-way it finishes the job. No state is kept but the last version
seen, so a restart re-derives everything from the registry and Git.

Errors never stop the loop. A failed lookup or a failed ``on_change`` is logged in one redacted
line, counted, and the version is not recorded as seen, so the next poll retries it. That holds
for permanent errors too (a broken manifest): a person fixes them without restarting Sluice, at
the cost of one log line per interval until then. A version a gate refused (``GateFailed``: it
is quarantined, or its provenance does not verify) is tried again after one interval, then
two, four, up to sixteen: its refusal seldom changes by itself, and each try may download and
hash its artifact; an alias that moves to another version is handed on at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.errors import GateFailed, SluiceError, TransientError
from controller.redact import redact

__all__ = [
    "NullWatchObserver",
    "PollReport",
    "WatchObserver",
    "WatchedModel",
    "Watcher",
]

_log = logging.getLogger("sluice.watch")

#: How often an idle loop looks at its stop event; :meth:`Watcher.wake` makes stopping immediate.
_STOP_CHECK_SECONDS = 0.5
#: A version a gate refused (quarantined, failed provenance) is tried again after one
#: interval, then two, four... up to this many intervals: a refusal rarely changes by itself
#: (a quarantine lifted, a key trusted), and each try may download and hash the artifact.
_REFUSED_BACKOFF_MAX_INTERVALS = 16


@dataclass(frozen=True)
class WatchedModel:
    """An alias of a registered model whose version one environment should run."""

    model: str
    alias: str
    environment: str

    def __str__(self) -> str:
        return f"{self.model}@{self.alias} ({self.environment})"


class WatchObserver(Protocol):
    """Where the watcher reports what it did (Prometheus counters in ``sluice serve``)."""

    def poll_finished(self, result: str) -> None:
        """A full poll ended; ``result`` is ``ok`` or ``error``."""
        ...

    def proposal_triggered(self, model: str, trigger: str) -> None:
        """``on_change`` was called; ``trigger`` is ``startup``, ``poll`` or ``webhook``."""
        ...

    def watch_error(self, model: str, stage: str) -> None:
        """A ``lookup`` or ``on_change`` raised for ``model``."""
        ...


class NullWatchObserver:
    """An observer that records nothing."""

    def poll_finished(self, result: str) -> None:
        """Ignore a finished poll."""

    def proposal_triggered(self, model: str, trigger: str) -> None:
        """Ignore a triggered proposal."""

    def watch_error(self, model: str, stage: str) -> None:
        """Ignore an error."""


@dataclass(frozen=True)
class PollReport:
    """What one pass did: the models it looked at, the changes it handed on, its errors."""

    checked: tuple[WatchedModel, ...]
    changed: tuple[tuple[WatchedModel, int], ...]
    #: One redacted line per failure.
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """No lookup and no ``on_change`` failed."""
        return not self.errors


class _Unseen:
    """The version of an alias nobody has looked at yet (``None`` means "no such alias")."""


_UNSEEN = _Unseen()


@dataclass(frozen=True)
class _LookupFailed:
    line: str


RegistryLookup = Callable[[str, str], int | None]
OnChange = Callable[[WatchedModel, int], None]


class Watcher:
    """Polls the registry for the watched aliases and reports each move once.

    ``registry_lookup(model, alias)`` returns the version the alias points at, or ``None`` when
    the model or alias does not exist. ``clock`` is monotonic seconds; it decides when a poll is
    due and how old the last one is. Drive it with :meth:`run_forever` in ``sluice serve``, or
    with :meth:`run_once` / :meth:`run_due` in tests.
    """

    def __init__(
        self,
        registry_lookup: RegistryLookup,
        on_change: OnChange,
        watched: Sequence[WatchedModel],
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        observer: WatchObserver | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._lookup = registry_lookup
        self._on_change = on_change
        # Order kept, duplicates dropped: the same model+alias may serve several environments.
        self.watched = tuple(dict.fromkeys(watched))
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._observer: WatchObserver = observer or NullWatchObserver()
        self._seen: dict[WatchedModel, int | _Unseen | None] = dict.fromkeys(self.watched, _UNSEEN)
        #: Versions a gate refused: (version, refusals so far, when to try it again).
        self._refused: dict[WatchedModel, tuple[int, int, float]] = {}
        self._pending: set[tuple[str, str]] = set()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._run_lock = threading.Lock()
        self._next_poll = clock()
        self._last_report: PollReport | None = None
        self._last_poll_at: float | None = None
        self._running = False

    # -- webhooks ------------------------------------------------------------------------------

    def trigger(self, model: str, alias: str) -> bool:
        """Ask for ``model@alias`` to be checked now; ``False`` (and nothing queued) if unwatched.

        Called from request threads. A trigger for a model already waiting is merged with it.
        """
        if not any(w.model == model and w.alias == alias for w in self.watched):
            return False
        with self._pending_lock:
            self._pending.add((model, alias))
        self._wake.set()
        return True

    def pending(self) -> frozenset[tuple[str, str]]:
        """Model+alias pairs triggered but not yet checked."""
        with self._pending_lock:
            return frozenset(self._pending)

    def wake(self) -> None:
        """Make :meth:`run_forever` look at its stop event and its triggers now."""
        self._wake.set()

    # -- passes --------------------------------------------------------------------------------

    def run_once(self) -> PollReport:
        """Check every watched alias now (a full poll) and schedule the next one."""
        with self._run_lock:
            triggered = self._take_pending()
            report = self._check(self.watched, triggered)
            now = self._clock()
            self._next_poll = now + self.interval_seconds
            self._last_report, self._last_poll_at = report, now
        self._observer.poll_finished("ok" if report.ok else "error")
        return report

    def run_pending(self) -> PollReport:
        """Check only the aliases that webhooks triggered since the last pass."""
        with self._run_lock:
            triggered = self._take_pending()
            due = tuple(w for w in self.watched if (w.model, w.alias) in triggered)
            return self._check(due, triggered)

    def run_due(self) -> PollReport | None:
        """Run a full poll if one is due, else the triggered checks if any, else nothing."""
        if self.seconds_until_due() <= 0:
            return self.run_once()
        if self.pending():
            return self.run_pending()
        return None

    def seconds_until_due(self) -> float:
        """Seconds until the next full poll is due (zero or less: due now)."""
        return self._next_poll - self._clock()

    def run_forever(self, stop: threading.Event) -> None:
        """Poll every interval and on each trigger until ``stop`` is set.

        The first full poll is due when the watcher is created, so a fresh watcher polls at once.

        Set ``stop`` and call :meth:`wake` to stop at once; otherwise the loop notices within
        half a second.
        """
        self._running = True
        try:
            while not stop.is_set():
                try:
                    self.run_due()
                except Exception as exc:  # a bug of ours must not end the loop either
                    _log.error("watch loop: %s", _one_line(exc))
                    # ...nor spin it: the next attempt waits for the next interval.
                    self._next_poll = self._clock() + self.interval_seconds
                timeout = min(max(self.seconds_until_due(), 0.0), _STOP_CHECK_SECONDS)
                if self._wake.wait(timeout):
                    self._wake.clear()
        finally:
            self._running = False

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """What ``GET /healthz`` shows: the last full poll and the version seen per alias."""
        report, at = self._last_report, self._last_poll_at
        last_poll: dict[str, object] = {"result": None, "age_seconds": None, "errors": []}
        if report is not None and at is not None:
            last_poll = {
                "result": "ok" if report.ok else "error",
                "age_seconds": round(self._clock() - at, 3),
                "errors": list(report.errors),
            }
        seen = dict(self._seen)
        return {
            "running": self._running,
            "interval_seconds": self.interval_seconds,
            "last_poll": last_poll,
            "watched": [
                {
                    "model": w.model,
                    "alias": w.alias,
                    "environment": w.environment,
                    "version": None if isinstance(seen[w], _Unseen) else seen[w],
                    "looked_up": not isinstance(seen[w], _Unseen),
                }
                for w in self.watched
            ],
        }

    # -- internals -----------------------------------------------------------------------------

    def _take_pending(self) -> set[tuple[str, str]]:
        with self._pending_lock:
            taken, self._pending = self._pending, set()
        return taken

    def _check(self, models: Sequence[WatchedModel], triggered: set[tuple[str, str]]) -> PollReport:
        # One lookup per model+alias per pass, however many environments watch it.
        answers: dict[tuple[str, str], int | _LookupFailed | None] = {}
        changed: list[tuple[WatchedModel, int]] = []
        errors: list[str] = []
        for watched in models:
            key = (watched.model, watched.alias)
            if key not in answers:
                answers[key] = self._lookup_line(watched)
            answer = answers[key]
            if isinstance(answer, _LookupFailed):
                errors.append(answer.line)
                continue
            handed_on, error = self._apply(
                watched, answer, "webhook" if key in triggered else "poll"
            )
            if error is not None:
                errors.append(error)
            elif handed_on is not None:
                changed.append((watched, handed_on))
        return PollReport(tuple(models), tuple(changed), tuple(errors))

    def _lookup_line(self, watched: WatchedModel) -> int | _LookupFailed | None:
        try:
            return self._lookup(watched.model, watched.alias)
        except Exception as exc:
            return _LookupFailed(self._failed(watched, "lookup", exc))

    def _apply(
        self, watched: WatchedModel, version: int | None, trigger: str
    ) -> tuple[int | None, str | None]:
        """Hand a new version to ``on_change``: (the version handed on, the error line)."""
        previous = self._seen[watched]
        if version == previous:
            return None, None
        if version is None:
            # The alias is gone: nothing to propose, but a later reappearance is a change.
            _log.warning("watch %s: alias not found in the registry", watched)
            self._seen[watched] = None
            return None, None
        refused = self._refused.get(watched)
        if refused is not None and refused[0] == version and self._clock() < refused[2]:
            return None, None  # refused by a gate: tried again when its backoff ends
        reason = "startup" if isinstance(previous, _Unseen) else trigger
        self._observer.proposal_triggered(watched.model, reason)
        _log.info("watch %s: version %s (%s)", watched, version, reason)
        try:
            self._on_change(watched, version)
        except GateFailed as exc:
            times = refused[1] + 1 if refused is not None and refused[0] == version else 1
            wait = self.interval_seconds * min(2 ** (times - 1), _REFUSED_BACKOFF_MAX_INTERVALS)
            self._refused[watched] = (version, times, self._clock() + wait)
            return None, self._failed(watched, "on_change", exc) + f" (tried again in {wait:g} s)"
        except Exception as exc:
            return None, self._failed(watched, "on_change", exc)
        self._refused.pop(watched, None)
        self._seen[watched] = version
        return version, None

    def _failed(self, watched: WatchedModel, stage: str, exc: Exception) -> str:
        self._observer.watch_error(watched.model, stage)
        line = f"watch {watched}: {stage} failed: {_one_line(exc)}"
        level = logging.WARNING if isinstance(exc, TransientError) else logging.ERROR
        _log.log(level, "%s", line)
        return line


def _one_line(exc: BaseException) -> str:
    """A redacted single line; library exceptions keep their type name for the reader."""
    text = str(exc) if isinstance(exc, SluiceError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split())) or type(exc).__name__
