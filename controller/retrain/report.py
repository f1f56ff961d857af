"""A finished retraining: its notice, and the outcome the train workflow reports back.

:func:`announce_outcome` is the notice of any finished retraining (the local path's, from
:meth:`~controller.retrain.retrainer.Retrainer.finished`, and the workflow's);
:func:`report_outcome` is ``sluice retrain report``: it finishes the record the dispatch
started, and that record only.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.errors import InputError
from controller.ports import Notifier
from controller.retrain.record import (
    FINISHED_OUTCOMES,
    Outcome,
    RetrainRecord,
    last_retrain_tag,
    parse_time,
    retrain_reason,
)
from controller.retrain.registry_state import RegistryCooldown

__all__ = ["RetrainReport", "announce_outcome", "report_outcome"]


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
        f"{retrain_reason(record.alerts, record.features)}. {result}",
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
    :meth:`~controller.retrain.retrainer.Retrainer.finished` does for a local one. Returns the
    record and whether it changed.

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
        asked = parse_time(report.requested_at)
        if asked is None:
            raise InputError(
                f"--requested-at {report.requested_at!r} is not an ISO 8601 time; pass the "
                "dispatch's client_payload.requested_at"
            )
        if asked != parse_time(previous.at):
            raise InputError(
                f"the retraining of {model} for {environment} requested at "
                f"{report.requested_at} is not the last one ({previous.outcome}, requested at "
                f"{previous.at}, in {tag}): a later retraining replaced it, so nothing is "
                "recorded"
            )
    record = previous.finish(
        report.outcome, report.detail, version=report.version, where=report.where, now=now
    )
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
