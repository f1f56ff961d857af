"""The rollout half of ``sluice serve``: one pass for every release, every interval.

``sluice rollout`` walks one release to its end; a controller in a cluster walks all of them
at once. Each pass is the same stateless reconcile, so the loop needs no memory of its own: a
restarted ``sluice serve`` picks every rollout up where Git and the registry say it is. A
failing release (registry down, a malformed pin) is logged and counted, and never stops the
others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from controller.errors import SluiceError
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler

__all__ = ["RolloutLoop"]

_log = logging.getLogger("sluice.rollout")


class RolloutLoop:
    """Reconciles ``releases()`` (environment, model) pairs at least every
    ``interval_seconds``, and sooner while a rollout has something due: at once after a
    commit, when the next analysis is due, every ``poll_seconds`` while it waits for a sync."""

    def __init__(
        self,
        reconciler: Reconciler,
        releases: Callable[[], Sequence[tuple[str, str]]],
        interval_seconds: float,
        *,
        poll_seconds: float = 2.0,
        on_error: Callable[[str, str], None] = lambda model, stage: None,
    ) -> None:
        self.reconciler = reconciler
        self.releases = releases
        self.interval_seconds = interval_seconds
        self.poll_seconds = poll_seconds
        self.on_error = on_error
        self.last: dict[tuple[str, str], PassReport] = {}

    def run_once(self) -> None:
        """One pass over every release."""
        try:
            releases = list(self.releases())
        except SluiceError as exc:
            _log.warning("listing releases failed: %s", exc.message)
            self.on_error("-", "rollout")
            return
        for environment, model in releases:
            try:
                report = self.reconciler.reconcile(environment, model)
            except SluiceError as exc:
                _log.warning("rollout of %s in %s: %s", model, environment, exc.message)
                self.on_error(model, "rollout")
                continue
            previous = self.last.get((environment, model))
            if previous is None or (previous.action, previous.detail) != (
                report.action,
                report.detail,
            ):
                _log.info(
                    "rollout %s v%s in %s [%s] %s",
                    model, report.version, environment, report.phase, report.detail,
                )  # fmt: skip
            self.last[(environment, model)] = report

    def run_forever(self, stop: threading.Event) -> None:
        """Pass until ``stop`` is set, then release every lease this controller holds, so
        another controller takes its rollouts over at once rather than a lease duration later
        (a pass under way is finished first: nothing is left half done)."""
        try:
            while not stop.is_set():
                self.run_once()
                stop.wait(self.next_pass_in())
        finally:
            if self.reconciler.lease is not None:
                try:
                    self.reconciler.lease.release_all()
                except SluiceError as exc:
                    _log.warning("releasing the rollout leases failed: %s", exc.message)

    def next_pass_in(self) -> float:
        """Seconds until the next pass: the soonest any running rollout has something due,
        at most ``interval_seconds`` (a rollout that ended waits for the next proposal)."""
        due = [
            self.poll_seconds if report.wake_in is None else report.wake_in
            for report in self.last.values()
            if not report.finished
        ]
        return max(0.05, min([self.interval_seconds, *due]))

    def status(self) -> dict[str, object]:
        """The last pass of each release, for ``/healthz``."""
        return {
            f"{env}/{model}": {"phase": r.phase, "version": r.version, "detail": r.detail}
            for (env, model), r in self.last.items()
        }
