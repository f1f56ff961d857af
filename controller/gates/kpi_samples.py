"""What one revision's requests add up to for a KPI check: counts for a rate, values for a mean.

The KPI judge compares the canary's and the primary's requests, each read per revision that
served it, with its outcome joined by request id. This module turns such requests into a
sample as :class:`~controller.gates.kpi_policy.KpiCheck` says: requests younger than
``outcomeDelay`` are left out, older ones without an outcome count as 0 or are skipped
(``missing``). It is plain arithmetic over plain values, so whoever reads the prediction log
builds samples the same way the benchmark and the tests do. A rate needs only counts, which the
store can add up itself (:class:`~controller.predictions.OutcomeCounts`, with the same cut-off):
:func:`rate_sample_of_counts` turns them into the sample :func:`sample_of` would build from the
rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.errors import InputError
from controller.gates.kpi_policy import KpiCheck
from controller.predictions import OutcomeCounts, ServedOutcome

__all__ = [
    "MeanSample",
    "OutcomeRequest",
    "RateSample",
    "rate_sample_of_counts",
    "requests_by_revision",
    "sample_of",
]


@dataclass(frozen=True)
class OutcomeRequest:
    """One request a revision served: when, and its outcome's value if it has arrived."""

    time: float
    outcome: float | None


@dataclass(frozen=True)
class RateSample:
    """A revision's counted requests and how many of them had outcome 1."""

    n: int
    successes: int

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.n:
            raise InputError(f"{self.successes} successes out of {self.n} requests")

    @property
    def rate(self) -> float:
        """Successes over requests (0 when none was counted)."""
        return self.successes / self.n if self.n else 0.0


@dataclass(frozen=True)
class MeanSample:
    """A revision's outcome values, one per counted request."""

    values: Sequence[float]

    @property
    def n(self) -> int:
        """Counted requests."""
        return len(self.values)


def _counted(requests: Iterable[OutcomeRequest], *, now: float, check: KpiCheck) -> list[float]:
    settled = now - check.outcome_delay_seconds
    values: list[float] = []
    for request in requests:
        if request.time > settled:
            continue  # its outcome may still come: neither a 0 nor a 1 yet
        if request.outcome is None:
            if check.missing == "zero":
                values.append(0.0)
            continue
        if not math.isfinite(request.outcome):
            raise InputError(f"outcome {check.outcome} is {request.outcome}, not a number")
        values.append(request.outcome)
    return values


def sample_of(
    requests: Iterable[OutcomeRequest], *, now: float, check: KpiCheck
) -> RateSample | MeanSample:
    """One revision's sample for ``check`` at time ``now`` (seconds, as the requests' times).

    Raises :class:`InputError` for a rate whose outcome is neither 0 nor 1, or a value that is
    not a finite number.
    """
    values = _counted(requests, now=now, check=check)
    if check.kind == "mean":
        return MeanSample(tuple(values))
    if any(value not in (0.0, 1.0) for value in values):
        bad = next(value for value in values if value not in (0.0, 1.0))
        raise InputError(
            f"outcome {check.outcome} is {bad:g} but KPI {check.name} is a rate: send 0 or 1, "
            "or make it kind: mean"
        )
    return RateSample(len(values), int(sum(values)))


def rate_sample_of_counts(counts: OutcomeCounts | None, *, check: KpiCheck) -> RateSample:
    """One revision's sample for rate ``check`` from the store's counts with the check's
    cut-off (None: it answered nothing in the window): under ``missing: zero`` every settled
    answer counts, under ``skip`` those with an outcome. The counts must hold no value a rate
    cannot count (``other``): those are read as rows, whose error names the request."""
    if counts is None:
        return RateSample(0, 0)
    if counts.other:
        raise InputError(
            f"outcome {check.outcome} has {counts.other} values that are not 0 or 1 but KPI "
            f"{check.name} is a rate: send 0 or 1, or make it kind: mean"
        )
    n = counts.settled if check.missing == "zero" else counts.with_outcome
    return RateSample(n, counts.positive)


def requests_by_revision(
    check: KpiCheck, served: Iterable[ServedOutcome]
) -> dict[str, list[OutcomeRequest]]:
    """``served`` (rows of ``check``'s outcome) split by the revision that answered, in the
    order the revisions first appear. A class-name outcome is the policy's mistake:
    :class:`InputError` naming the request."""
    by_revision: dict[str, list[OutcomeRequest]] = {}
    for row in served:
        if isinstance(row.value, str):
            raise InputError(
                f"outcome {check.outcome} of request {row.request_id} is {row.value!r}, a class "
                "name: a KPI counts numbers (send 0/1 or a value)"
            )
        by_revision.setdefault(row.revision, []).append(OutcomeRequest(row.time, row.value))
    return by_revision
