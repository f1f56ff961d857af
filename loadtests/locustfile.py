"""Load on one model server: one row per request (sampled, or cycled), over KServe's V1 or V2.

Sluice runs this file headless against a canary's tag route before each canary step is
judged (:mod:`controller.backends.locust_load`), and a person can run it by hand with the same
environment variables (see ``loadtests/README.md``). It is configured only through the
environment, so the controller never imports Locust: importing ``requests`` before ``locust``
in one process ends in a RecursionError from gevent's monkey-patching.

``SLUICE_LOAD_PAYLOADS``
    Path of a JSON file holding a non-empty array of rows, each an object of feature name to
    a scalar value (number, string or boolean).
``SLUICE_LOAD_MODEL``
    Model name in ``/v1/models/NAME:predict`` or ``/v2/models/NAME/infer``.
``SLUICE_LOAD_PROTOCOL``
    ``v1`` (``{"instances": [row]}``) or ``v2`` (one tensor of shape ``[1]`` per feature, as
    the V2 metadata of Sluice's model server lists them); ``v2`` by default.
``SLUICE_LOAD_HEADERS``
    Optional JSON object of headers sent with every request, such as
    ``{"X-Sluice-Revision-Tag": "canary"}``.
``SLUICE_LOAD_TIMEOUT_SECONDS``
    Optional per-request timeout (10 by default); a request that takes longer is a failure.
``SLUICE_LOAD_MAX_REQUESTS``
    Optional: send this many requests in all, then stop (a smoke test); ``-t`` still bounds
    the run.
``SLUICE_LOAD_USER_RPS``
    Optional: requests per second per user (Locust's ``constant_throughput``).
``SLUICE_LOAD_ORDER``
    Optional: ``random`` (the default) samples a row for each request; ``cycle`` sends the
    rows in the file's order and round again, so a replay sends exactly its rows.

Every request also carries ``X-Sluice-Synthetic: load-test``, whatever
``SLUICE_LOAD_HEADERS`` says: the model server answers it as any other, and the router counts
it in the metrics the canary gates read, but the server's drift monitor leaves it out of its
window, where a few example rows repeated thousands of times would read as drift. The name is
:data:`SYNTHETIC_HEADER` here and ``controller.synthetic_traffic.SYNTHETIC_HEADER`` in the
controller, which this file must not import; a test checks that the two agree.

A request fails unless it is answered with a 2xx status. Without ``SLUICE_LOAD_USER_RPS``
users send back to back (no wait time), so the load is closed-loop: ``-u`` requests in flight
at any time, as many per second as the server answers. With it, each user waits out the rest
of its ``1 / rate`` seconds after each answer, which bounds the load to a known rate.

Response times are rounded up, not to the nearest value, onto Locust's grid of about two
significant digits: a request of 40.2 ms is kept as 41 ms, never as 40 ms. Every bucket bound
of Knative's latency histogram (5, 10, 20, 40 ... 100000 ms) lies on that grid, so the rounded
table still says exactly how many requests took at most each bound, as Prometheus's ``le``
buckets do.
"""

from __future__ import annotations

import json
import math
import os
import random
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import gevent
import locust.stats
from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment
from locust.exception import StopUser

__all__ = [
    "SYNTHETIC_HEADER",
    "SYNTHETIC_VALUE",
    "LoadConfig",
    "ModelUser",
    "bucket_response_time_up",
    "config_from_env",
]

#: Marks every request as synthetic, so the model server keeps it out of its drift window.
SYNTHETIC_HEADER = "X-Sluice-Synthetic"
SYNTHETIC_VALUE = "load-test"

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_V2_TYPES = ((bool, "BOOL"), (int, "INT64"), (float, "FP64"), (str, "BYTES"))


@dataclass(frozen=True)
class LoadConfig:
    """What the environment asks for: where to post and the encoded bodies to sample from."""

    path: str
    bodies: tuple[str, ...]
    headers: Mapping[str, str]
    timeout_seconds: float
    max_requests: int | None = None
    #: Requests per second per user; None: back to back.
    user_rps: float | None = None
    #: Rows in order, round again (a replay), rather than drawn at random.
    cycle: bool = False


def config_from_env(environ: Mapping[str, str]) -> LoadConfig:
    """Read the ``SLUICE_LOAD_*`` variables; :class:`SystemExit` with one line if they are wrong."""
    payloads = environ.get("SLUICE_LOAD_PAYLOADS", "")
    model = environ.get("SLUICE_LOAD_MODEL", "")
    protocol = environ.get("SLUICE_LOAD_PROTOCOL", "v2").lower()
    if not payloads or not model:
        _exit("set SLUICE_LOAD_PAYLOADS (a JSON file of rows) and SLUICE_LOAD_MODEL")
    if protocol not in ("v1", "v2"):
        _exit(f"SLUICE_LOAD_PROTOCOL must be v1 or v2, not {protocol!r}")
    rows = _read_rows(Path(payloads))
    encode = _v1_body if protocol == "v1" else _v2_body
    name = urllib.parse.quote(model, safe="")
    path = f"/v1/models/{name}:predict" if protocol == "v1" else f"/v2/models/{name}/infer"
    return LoadConfig(
        path=path,
        bodies=tuple(json.dumps(encode(row)) for row in rows),
        headers=_with_synthetic(_read_headers(environ.get("SLUICE_LOAD_HEADERS", ""))),
        timeout_seconds=_read_timeout(environ.get("SLUICE_LOAD_TIMEOUT_SECONDS", "10")),
        max_requests=_read_max_requests(environ.get("SLUICE_LOAD_MAX_REQUESTS", "")),
        user_rps=_read_user_rps(environ.get("SLUICE_LOAD_USER_RPS", "")),
        cycle=_read_order(environ.get("SLUICE_LOAD_ORDER", "")) == "cycle",
    )


def bucket_response_time_up(response_time: float) -> int:
    """Round up onto Locust's grid: whole ms below 100, tens below 1000, then hundreds, then
    thousands (Locust rounds to the nearest, which moves a 40.4 ms request into the 40 ms
    bucket)."""
    step = 1 if response_time < 100 else 10 if response_time < 1000 else 100
    step = 1000 if response_time >= 10_000 else step
    return int(math.ceil(response_time / step) * step)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _exit(f"cannot read payloads from {path}: {exc}")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        _exit(f"{path} must hold a non-empty JSON array of objects (feature name to value)")
    for row in rows:
        for name, value in row.items():
            if not isinstance(value, bool | int | float | str):
                _exit(f"{path}: feature {name!r} must be a number, string or boolean: {value!r}")
    return rows


def _read_headers(text: str) -> dict[str, str]:
    try:
        headers = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        _exit(f"SLUICE_LOAD_HEADERS is not JSON: {exc}")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        _exit('SLUICE_LOAD_HEADERS must be a JSON object of strings, e.g. {"X-Tag": "canary"}')
    return headers


def _with_synthetic(extra: Mapping[str, str]) -> dict[str, str]:
    """JSON headers, then ``extra``, then the synthetic marker, which no spelling in ``extra``
    can replace or duplicate."""
    marker = SYNTHETIC_HEADER.lower()
    kept = {name: value for name, value in extra.items() if name.lower() != marker}
    return {**_JSON, **kept, SYNTHETIC_HEADER: SYNTHETIC_VALUE}


def _read_timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        _exit(f"SLUICE_LOAD_TIMEOUT_SECONDS must be a positive number, not {text!r}")
    return seconds


def _read_max_requests(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        _exit(f"SLUICE_LOAD_MAX_REQUESTS must be a positive whole number, not {text!r}")
    return count


def _read_user_rps(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not math.isfinite(rate) or rate <= 0:
        _exit(f"SLUICE_LOAD_USER_RPS must be a positive number (requests a second), not {text!r}")
    return rate


def _read_order(text: str) -> str:
    order = text.strip().lower() or "random"
    if order not in ("random", "cycle"):
        _exit(f"SLUICE_LOAD_ORDER must be random or cycle, not {text!r}")
    return order


def _v1_body(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"instances": [dict(row)]}


def _v2_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """One tensor per feature (Sluice's model server decodes them into a DataFrame's columns)."""
    return {
        "inputs": [
            {"name": name, "datatype": _v2_type(value), "shape": [1], "data": [value]}
            for name, value in row.items()
        ]
    }


def _v2_type(value: object) -> str:
    # bool before int: True is an int in Python, but BOOL on the wire.
    return next(name for kind, name in _V2_TYPES if isinstance(value, kind))


def _exit(message: str) -> NoReturn:
    raise SystemExit(f"sluice locustfile: {message}")


_config: LoadConfig | None = None
#: Requests started so far, against ``max_requests`` (greenlets switch only on I/O).
_started = 0
#: The next row of a cycling run, shared by every user of the process.
_next_row = 0
_quitting = False


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    """Read the configuration once per process, after ``--help`` had its chance to answer."""
    global _config
    _config = config_from_env(os.environ)
    ModelUser.network_timeout = ModelUser.connection_timeout = _config.timeout_seconds
    if _config.user_rps is not None:
        ModelUser.wait_time = constant_throughput(_config.user_rps)
    locust.stats.bucket_response_time = bucket_response_time_up


def _next_body(config: LoadConfig) -> str:
    """The next row's body: the file's next in order when cycling, else one at random."""
    global _next_row
    if not config.cycle:
        return random.choice(config.bodies)  # noqa: S311 (sampling, not secrecy)
    body = config.bodies[_next_row % len(config.bodies)]
    _next_row += 1
    return body


class ModelUser(FastHttpUser):
    """Posts one row per request to the model (sampled, or in order when cycling), back to
    back unless paced."""

    @task
    def predict(self) -> None:
        """One prediction; any status outside 2xx (0 for a connection error) is a failure."""
        assert _config is not None, "the init event configures the locustfile"
        if _config.max_requests is not None:
            self._take_ticket(_config.max_requests)
        with self.client.post(
            _config.path,
            data=_next_body(_config),
            headers=dict(_config.headers),
            name=_config.path,
            catch_response=True,
        ) as response:
            if 200 <= response.status_code < 300:
                response.success()
            else:
                detail = (response.text or str(response.error or ""))[:160]
                response.failure(f"HTTP {response.status_code}: {' '.join(detail.split())}")

    def _take_ticket(self, limit: int) -> None:
        """Let this request go while fewer than ``limit`` were started; past it, stop this
        user and end the run (gracefully: requests in flight are answered and counted)."""
        global _started, _quitting
        if _started < limit:
            _started += 1
            return
        if not _quitting and self.environment.runner is not None:
            _quitting = True
            gevent.spawn(self.environment.runner.quit)
        raise StopUser
