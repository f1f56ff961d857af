"""Put load on a canary with Locust, run headless in a child process, and read what it measured.

Locust is never imported here: it monkey-patches the standard library with gevent when
imported, and in a process that has already imported ``requests`` (MLflow and PyGithub do)
that ends in a RecursionError. So :class:`LocustLoadGenerator` runs ``python -m locust`` on
``loadtests/locustfile.py``, hands it the plan through ``SLUICE_LOAD_*`` environment variables
and a payloads file, and parses the ``--json`` statistics Locust prints on stdout when it
stops. The JSON is the only complete record: Locust resets its statistics while serialising
them, so its final CSV and console table undercount.

Latencies come from the merged ``response_times`` tables of all entries (response time in ms,
rounded onto Locust's grid, to request count): percentiles by nearest rank, and a
:class:`~controller.analysis_types.LatencyHistogram` on Knative queue-proxy's buckets, so the
statistical judge can set the load test beside the router's Prometheus histograms.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.analysis_types import LatencyHistogram, LoadPlan, LoadReport
from controller.errors import ConfigError, InputError, TransientError
from controller.redact import redact

__all__ = [
    "DEFAULT_LOCUSTFILE",
    "LATENCY_BUCKETS_MS",
    "LocustLoadGenerator",
    "histogram_from_response_times",
    "locust_command",
    "percentile_ms",
    "report_from_stats",
]

#: The locustfile of a repository checkout.
DEFAULT_LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"

#: Knative queue-proxy's ``revision_app_request_latencies`` bounds in ms, as the local router
#: exports them (:data:`controller.local.router.LATENCY_BUCKETS_MS`), then ``inf``.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500,
    600, 700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000, math.inf,
)  # fmt: skip

_TAIL_LINES = 40


class LocustLoadGenerator:
    """A :class:`~controller.ports.LoadGenerator` running ``python -m locust`` headless.

    ``python`` is the interpreter with Locust installed (this one by default). A request not
    answered within ``request_timeout_seconds`` is a failure; at the end Locust waits as long
    for requests in flight, so that each is counted rather than cut off. ``grace_seconds`` is
    how long past the test's duration and that final wait the process may take (start-up is
    under a second) before it is killed and the run reported as timed out.
    """

    def __init__(
        self,
        locustfile: Path | None = None,
        python: str = sys.executable,
        *,
        request_timeout_seconds: int = 10,
        grace_seconds: float = 60.0,
    ) -> None:
        self.locustfile = (locustfile or DEFAULT_LOCUSTFILE).resolve()
        self.python = python
        self.request_timeout_seconds = request_timeout_seconds
        self.grace_seconds = grace_seconds

    def run(self, plan: LoadPlan) -> LoadReport:
        """Run the plan to completion; errors name what failed and the fix, on one line.

        :class:`~controller.errors.ConfigError` when Locust cannot run (no such locustfile,
        Locust not installed, a locustfile or option it rejects); :class:`InputError` for a
        plan it could not send; :class:`~controller.errors.TransientError` when it was killed
        or ran out of time, where a retry may succeed.
        """
        if not self.locustfile.is_file():
            raise ConfigError(
                f"no locustfile at {self.locustfile}; pass the path of loadtests/locustfile.py "
                "from a Sluice checkout"
            )
        _check_plan(plan)
        if plan.report_dir is not None:
            plan.report_dir.mkdir(parents=True, exist_ok=True)
            return self._run_in(plan, plan.report_dir, keep=True)
        with tempfile.TemporaryDirectory(prefix="sluice-locust-") as work:
            return self._run_in(plan, Path(work), keep=False)

    def _run_in(self, plan: LoadPlan, work: Path, *, keep: bool) -> LoadReport:
        # The child runs in ``work``: a relative path handed to it would resolve from there.
        work = work.resolve()
        payloads = work / "payloads.json"
        payloads.write_text(_payloads_json(plan.payloads), encoding="utf-8")
        log_path = work / "locust.log"
        wait = self.request_timeout_seconds
        argv = locust_command(self.python, self.locustfile, plan, stop_timeout=wait)
        timeout = math.ceil(plan.duration_seconds) + wait + self.grace_seconds
        started = time.monotonic()
        with log_path.open("w", encoding="utf-8") as log:
            try:
                # cwd is the work directory so that no stray locust.conf is read.
                finished = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    cwd=work,
                    env=_child_env(plan, payloads, wait),
                    timeout=timeout,
                    text=True,
                    check=False,
                )
            except OSError as exc:  # no such file, not executable
                raise ConfigError(
                    f"cannot run {self.python} for Locust: {exc.strerror}; pass an installed "
                    "Python interpreter"
                ) from None
            except subprocess.TimeoutExpired:
                where = _where(log_path, keep)
                raise TransientError(
                    f"locust did not finish within {timeout:.0f} s against {redact(plan.url)} "
                    f"({where}); retry, or shorten the test on a loaded machine"
                ) from None
        stats = _parse_stats(finished.stdout)
        if stats is None:
            raise _start_error(finished.returncode, log_path, keep, self.python)
        elapsed = time.monotonic() - started
        report_path = work / "locust.json"
        if keep:
            report_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        return report_from_stats(
            stats,
            fallback_duration=min(plan.duration_seconds, elapsed),
            report_path=report_path if keep else None,
        )


def locust_command(
    python: str, locustfile: Path, plan: LoadPlan, *, stop_timeout: int = 10
) -> list[str]:
    """The command line for ``plan``; the locustfile reads the rest from ``SLUICE_LOAD_*``."""
    return [
        *(python, "-m", "locust", "-f", str(locustfile), "--headless"),
        *("-u", str(plan.users), "-r", f"{plan.spawn_rate:g}"),
        *("-t", f"{math.ceil(plan.duration_seconds)}s", "--host", plan.url.rstrip("/")),
        *("--json", "--only-summary", "--stop-timeout", str(stop_timeout)),
        # Failed requests are the gate's to judge, not a reason for a non-zero exit.
        *("--exit-code-on-error", "0"),
    ]


def report_from_stats(
    stats: Sequence[Mapping[str, Any]],
    *,
    fallback_duration: float,
    report_path: Path | None = None,
) -> LoadReport:
    """Sum Locust's ``--json`` entries into one :class:`LoadReport`.

    The duration is that of the requests (first entry created to last request), as Locust's
    own ``total_rps`` uses; ``fallback_duration`` when fewer than two moments are known.
    """
    requests = sum(int(e.get("num_requests", 0)) for e in stats)
    failures = sum(int(e.get("num_failures", 0)) for e in stats)
    times: Counter[float] = Counter()
    for entry in stats:
        for key, count in dict(entry.get("response_times") or {}).items():
            times[float(key)] += int(count)
    starts = [float(e["start_time"]) for e in stats if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in stats if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else 0.0
    return LoadReport(
        requests=requests,
        failures=failures,
        duration_seconds=span if span > 0 else fallback_duration,
        p50_ms=percentile_ms(times, 0.50),
        p95_ms=percentile_ms(times, 0.95),
        p99_ms=percentile_ms(times, 0.99),
        latency=histogram_from_response_times(times) if times else None,
        report_path=report_path,
    )


def percentile_ms(response_times: Mapping[float, int], fraction: float) -> float | None:
    """The nearest-rank percentile of a response-time table (None when it is empty)."""
    total = sum(response_times.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for value in sorted(response_times):
        seen += response_times[value]
        if seen >= rank:
            return value
    return max(response_times)


def histogram_from_response_times(
    response_times: Mapping[float, int], bounds: Sequence[float] = LATENCY_BUCKETS_MS
) -> LatencyHistogram:
    """Count each response time into the first bound at or above it (Prometheus's ``le``)."""
    counts = [0] * len(bounds)
    for value, count in response_times.items():
        index = bisect.bisect_left(bounds, value)
        if index == len(bounds):  # beyond a finite last bound: it still has to be counted
            index -= 1
        counts[index] += count
    return LatencyHistogram(bounds=tuple(bounds), counts=tuple(counts))


def _check_plan(plan: LoadPlan) -> None:
    if plan.protocol not in ("v1", "v2"):
        raise ConfigError(f"load test protocol must be v1 or v2, not {plan.protocol!r}")
    if plan.order not in ("random", "cycle"):
        raise ConfigError(f"load test order must be random or cycle, not {plan.order!r}")
    if plan.rps is not None and plan.rps <= 0:
        raise ConfigError(f"load test rps must be positive, not {plan.rps}")
    if plan.max_requests is not None and plan.max_requests < 1:
        raise ConfigError(f"load test max requests must be >= 1, not {plan.max_requests}")
    if plan.users < 1 or plan.spawn_rate <= 0 or plan.duration_seconds <= 0:
        raise ConfigError(
            f"load test needs users >= 1, a positive spawn rate and duration, not "
            f"users={plan.users}, spawn rate={plan.spawn_rate}, duration={plan.duration_seconds}"
        )
    if not plan.url.startswith(("http://", "https://")):
        raise ConfigError(f"load test URL must be http:// or https://, not {redact(plan.url)!r}")
    if not plan.payloads:
        raise InputError(
            f"no payloads to send to {plan.model_name}; give the load test rows from the "
            "model's input example or reference data"
        )


def _payloads_json(payloads: Sequence[Mapping[str, object]]) -> str:
    rows: list[dict[str, object]] = []
    for number, row in enumerate(payloads, start=1):
        clean: dict[str, object] = {}
        for name, value in row.items():
            value = value.item() if hasattr(value, "item") else value  # numpy scalars
            if not isinstance(value, bool | int | float | str) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise InputError(
                    f"payload row {number}: feature {name!r} must be a finite number, string "
                    f"or boolean, not {type(value).__name__}; drop or fill it"
                )
            clean[str(name)] = value
        rows.append(clean)
    return json.dumps(rows)


def _child_env(plan: LoadPlan, payloads: Path, request_timeout: int) -> dict[str, str]:
    # LOCUST_* variables would silently override the command line; the plan is the config.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(
        SLUICE_LOAD_PAYLOADS=str(payloads),
        SLUICE_LOAD_MODEL=plan.model_name,
        SLUICE_LOAD_PROTOCOL=plan.protocol,
        SLUICE_LOAD_HEADERS=json.dumps(dict(plan.headers)),
        SLUICE_LOAD_TIMEOUT_SECONDS=str(request_timeout),
    )
    if plan.max_requests is not None:
        env["SLUICE_LOAD_MAX_REQUESTS"] = str(plan.max_requests)
    if plan.rps is not None:
        env["SLUICE_LOAD_USER_RPS"] = f"{plan.rps / plan.users:g}"
    if plan.order != "random":
        env["SLUICE_LOAD_ORDER"] = plan.order
    return env


def _parse_stats(stdout: str) -> list[dict[str, Any]] | None:
    """The statistics array Locust printed last (a locustfile may print lines of its own)."""
    lines = stdout.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    decoder = json.JSONDecoder()
    for index in reversed(range(len(lines))):
        if lines[index].strip() in ("[", "[]"):
            try:
                value, _ = decoder.raw_decode(stdout, offsets[index])
            except ValueError:
                continue
            if isinstance(value, list) and all(isinstance(e, dict) for e in value):
                return value
    return None


def _start_error(code: int, log_path: Path, keep: bool, python: str) -> Exception:
    where = _where(log_path, keep)
    if code < 0:
        return TransientError(
            f"locust was killed by signal {-code} before it reported ({where}); "
            "retry, and check the machine's memory if it recurs"
        )
    if "No module named locust" in _tail(log_path):
        return ConfigError(
            f"Locust is not installed for {python}; run {python} -m pip install locust"
        )
    return ConfigError(
        f"locust exited with code {code} before it reported ({where}); fix the locustfile "
        "or the load test settings it names"
    )


def _where(log_path: Path, keep: bool) -> str:
    last = next((line for line in reversed(_tail(log_path).splitlines()) if line.strip()), "")
    said = f": {redact(last.strip())[:300]}" if last else ": no output"
    return f"log {log_path}{said}" if keep else f"last log line{said}"


def _tail(path: Path) -> str:
    try:
        return "\n".join(
            path.read_text(encoding="utf-8", errors="replace").splitlines()[-_TAIL_LINES:]
        )
    except OSError:
        return ""
