"""A graph member judged on a replay of its regime's requests rather than on the graph's calls.

A member the graph rarely calls (the black-swan branch: about 2 % of days) gets too few
requests from the graph for the judge's ``minSamples`` within a step's looks, and is held
(inconclusive) until the rollout aborts. ``graphTraffic.replay`` names a file of that
regime's requests in the GitOps repository instead: at each analysis the load test sends
exactly those rows, in order and round again, paced at ``rps``, to the canary's and the
primary's tag routes at once, and the metric checks and the judge compare the two revisions
on the member's own revision series, which then hold those requests, rather than on the
graph's step series, which stay the gate when ``replay`` is not set.

The file is read from Git with the environment's ``sluice.yaml`` (the default branch, one
fetch), so a change to what a member is judged on is reviewed like any other change. It holds
JSON objects, each a row (feature name to a number, string or boolean) or a KServe V1 body
``{"instances": [row, ...]}`` whose rows are taken one by one: a ``.jsonl`` file one per
line, a ``.json`` file one array of them (or one body). Every row is sent as its own request,
as the load test sends its rows, in the load test's protocol.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.analysis_types import GateResult, LoadPlan
from controller.errors import ConfigError
from controller.gates.load_test import GATE, LoadTestConfig
from controller.limits import REPLAY_PAYLOADS_MAX_BYTES, check_size

__all__ = [
    "GraphReplay",
    "ReplayPayloads",
    "parse_replay_payloads",
    "replay_plan",
    "replay_result",
]

_SUFFIXES = (".json", ".jsonl")
_FORMAT = (
    'write JSON objects, each a row of feature values or a V1 body {"instances": [row, ...]} '
    "(.jsonl: one per line; .json: one array of them)"
)


class GraphReplay(BaseModel):
    """Judge a rarely called member on a replay of its regime's requests."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    payloads: str = Field(
        max_length=1024,
        description="File of the regime's requests in the GitOps repository, relative to its "
        "root (read from the default branch with sluice.yaml): .jsonl, one JSON object per "
        'line, or .json, one array; each object a row of feature values or a V1 body {"instances": '
        "[row, ...]}. At each analysis the load test sends exactly these rows, in order and "
        "round again, one per request, to the canary's and the primary's tag routes, and "
        "the metric checks and the judge compare the two on the InferenceService's own "
        "revision series instead of the graph's step series.",
    )
    rps: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second to each revision, in all (each load-test user paced "
        "to rps/users); unset: gates.loadTest.rps (back to back when that is unset too).",
    )
    duration_seconds: float | None = Field(
        default=None,
        alias="duration",
        gt=0,
        le=3600,
        description="Seconds of replay per analysis, rounded up; unset: gates.loadTest.duration.",
    )

    @field_validator("payloads")
    @classmethod
    def _a_file_in_the_repository(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value or not path.name:
            raise ValueError(
                "payloads must be a path relative to the GitOps repository's root, without "
                f"'..', e.g. loadtests/payloads/market-regime-black-swan.jsonl, not {value!r}"
            )
        if path.suffix not in _SUFFIXES:
            raise ValueError(f"payloads must be a .jsonl or .json file, not {value!r}")
        return value


@dataclass(frozen=True)
class ReplayPayloads:
    """The rows of a replay file as read from Git: ``source`` is ``PATH@BRANCH``."""

    source: str
    rows: tuple[Mapping[str, object], ...]


def replay_plan(
    load: LoadTestConfig,
    replay: GraphReplay,
    payloads: ReplayPayloads,
    *,
    url: str,
    model_name: str,
    report_dir: Path | None = None,
) -> LoadPlan:
    """The load test of one analysis of a replaying member, against the route at ``url``:
    the file's rows in order and round again, at the replay's pace and length (the load
    test's where the replay sets none), with the load test's users and protocol."""
    plan = load.load_plan(
        url=url, model_name=model_name, payloads=payloads.rows, report_dir=report_dir
    )
    return replace(
        plan,
        rps=replay.rps if replay.rps is not None else load.rps,
        duration_seconds=replay.duration_seconds or load.duration_seconds,
        order="cycle",
    )


def replay_result(result: GateResult, payloads: ReplayPayloads) -> GateResult:
    """The load test's result, saying that it replayed ``payloads``."""
    rows = f"{len(payloads.rows):,} row{'s' if len(payloads.rows) != 1 else ''}"
    said = result.summary.removeprefix(f"{GATE}: ")
    return replace(result, summary=f"{GATE}: replay of {rows} from {payloads.source}: {said}")


def parse_replay_payloads(text: str, *, source: str) -> ReplayPayloads:
    """The rows of a replay file's text (``source`` names it, ``PATH@BRANCH``); a
    :class:`ConfigError` of one line naming the file, the entry and the fix otherwise.

    Remembered by text: every pass of a rollout reads the same file."""
    return _parse(text, source)


@functools.lru_cache(maxsize=32)
def _parse(text: str, source: str) -> ReplayPayloads:
    check_size(
        len(text.encode("utf-8")),
        REPLAY_PAYLOADS_MAX_BYTES,
        label=source,
        kind="replay payloads file",
        error=ConfigError,
    )
    path = source.rsplit("@", 1)[0]
    entries = (
        _jsonl_entries(text, source) if path.endswith(".jsonl") else _json_entries(text, source)
    )
    rows: list[Mapping[str, object]] = []
    for where, entry in entries:
        rows += _rows_of(entry, f"{source} {where}")
    if not rows:
        raise ConfigError(f"{source} holds no rows to replay; {_FORMAT}")
    return ReplayPayloads(source, tuple(rows))


def _jsonl_entries(text: str, source: str) -> list[tuple[str, object]]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append((f"line {number}", json.loads(line)))
        except ValueError as exc:
            raise ConfigError(f"{source} line {number} is not JSON ({exc}); {_FORMAT}") from None
    return entries


def _json_entries(text: str, source: str) -> list[tuple[str, object]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source} is not JSON ({exc}); {_FORMAT}") from None
    if isinstance(document, list):
        return [(f"entry {number}", entry) for number, entry in enumerate(document, start=1)]
    return [("", document)]


def _rows_of(entry: object, where: str) -> list[Mapping[str, object]]:
    """The rows of one entry: itself, or a V1 body's instances."""
    where = where.rstrip()
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is {type(entry).__name__}, not an object; {_FORMAT}")
    if "inputs" in entry:
        raise ConfigError(f"{where} is a V2 body (inputs), which replay does not read; {_FORMAT}")
    if "instances" in entry:
        instances = entry["instances"]
        if not isinstance(instances, list) or not instances:
            raise ConfigError(f"{where}: instances must be a non-empty list of rows; {_FORMAT}")
        return [_row(instance, f"{where} instance {n}") for n, instance in enumerate(instances, 1)]
    return [_row(entry, where)]


def _row(row: object, where: str) -> Mapping[str, object]:
    if not isinstance(row, dict) or not row:
        raise ConfigError(f"{where} must be a non-empty object of feature values; {_FORMAT}")
    for name, value in row.items():
        scalar = isinstance(value, bool | int | float | str)
        if not scalar or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(
                f"{where}: feature {name!r} must be a finite number, string or boolean, not "
                f"{json.dumps(value)}; write the row's values out"
            )
    return dict(row)
