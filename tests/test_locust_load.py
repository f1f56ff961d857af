"""Locust run headless as a child process, against real model servers and tiny HTTP servers."""

from __future__ import annotations

import dataclasses
import http.server
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fraud_model import Registered, serve

from controller.analysis_types import LoadPlan, Verdict
from controller.backends.locust_load import (
    DEFAULT_LOCUSTFILE,
    LATENCY_BUCKETS_MS,
    LocustLoadGenerator,
    histogram_from_response_times,
    locust_command,
    percentile_ms,
    report_from_stats,
)
from controller.errors import ConfigError, InputError, TransientError
from controller.gates.graph_replay import GraphReplay, parse_replay_payloads, replay_plan
from controller.gates.load_test import LoadTestConfig, evaluate_load
from controller.local.router import LATENCY_BUCKETS_MS as ROUTER_BUCKETS_MS
from controller.local.serving.launcher import ModelServerHandle
from controller.synthetic_traffic import LOAD_TEST, SYNTHETIC_HEADER
from models.fraud_detector.data import FEATURES, generate_transactions

ROW = {"amount": 12.5, "hour": 3, "merchant_category": "grocery", "country": "DE"}


@pytest.fixture(scope="module")
def model_server(
    fraud_model: Registered,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelServerHandle]:
    """The fraud model served as the local target serves a revision."""
    with serve(fraud_model, tmp_path_factory.mktemp("model-server")) as handle:
        yield handle


@pytest.fixture(scope="module")
def payloads() -> tuple[dict[str, Any], ...]:
    """Transactions as plain JSON rows, as a model's input example gives them."""
    frame = generate_transactions(week=1, rows=25, seed=11)[FEATURES]
    return tuple(json.loads(frame.to_json(orient="records")))


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's ``status`` and keeps what it was sent."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server: Any = self.server
        # The message itself, not a dict: a dict would hide a header sent twice.
        server.seen.append((self.path, self.headers, json.loads(body)))
        answer = b'{"error": "injected"}' if server.status >= 400 else b'{"outputs": []}'
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests would flood the test output."""


def recording_server(status: int) -> Iterator[tuple[str, list[Any]]]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.status, server.seen, server.daemon_threads = status, [], True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def failing_server() -> Iterator[tuple[str, list[Any]]]:
    """A server answering 500 to everything."""
    yield from recording_server(500)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[Any]]]:
    """A server answering 200 to everything and recording each request."""
    yield from recording_server(200)


# -- against the real model server ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_load_on_the_model_server_succeeds(
    protocol: str, model_server: ModelServerHandle, payloads: Any, tmp_path: Path
) -> None:
    """Five seconds of load in either protocol: every request answered, the report kept."""
    plan = LoadPlan(
        url=model_server.url,
        model_name="fraud",
        protocol="v1" if protocol == "v1" else "v2",
        payloads=payloads,
        users=2,
        spawn_rate=2,
        duration_seconds=5,
        report_dir=tmp_path / "report",
    )
    launched = time.time()
    report = LocustLoadGenerator().run(plan)
    stats = json.loads((tmp_path / "report" / "locust.json").read_text())
    first_request = min(entry["start_time"] for entry in stats) - launched
    print(f"{protocol}: first request {first_request:.2f} s after launch; {report}")
    assert report.requests > 0
    assert report.failures == 0
    assert report.report_path == tmp_path / "report" / "locust.json"
    assert (tmp_path / "report" / "locust.log").is_file()
    assert [entry["name"] for entry in stats] == [
        "/v1/models/fraud:predict" if protocol == "v1" else "/v2/models/fraud/infer"
    ]
    assert report.latency is not None
    assert report.latency.total == report.requests
    assert report.p50_ms is not None
    assert report.p99_ms is not None
    assert 0 < report.p50_ms <= report.p99_ms
    assert 3 < report.duration_seconds <= 5


# -- against tiny HTTP servers ----------------------------------------------------------------


def test_server_answering_500_fails_the_gate(failing_server: tuple[str, list[Any]]) -> None:
    """Every request answered 500 counts as failed, and the gate fails on it."""
    url, _ = failing_server
    plan = LoadPlan(url, "fraud", "v1", (ROW,), users=2, spawn_rate=2, duration_seconds=2)
    report = LocustLoadGenerator().run(plan)
    assert report.requests >= 50
    assert report.failure_ratio == pytest.approx(1.0)
    assert report.report_path is None
    result = evaluate_load(report, LoadTestConfig())
    assert result.verdict is Verdict.FAIL
    assert "100.0% failed, above 1%" in result.summary


def test_a_paced_test_sends_about_its_rate_and_no_more(echo_server: tuple[str, list[Any]]) -> None:
    """rps 20 over 3 s from 2 users: about 60 requests, where back to back sends thousands."""
    url, seen = echo_server
    plan = LoadPlan(url, "fraud", "v1", (ROW,), users=2, spawn_rate=2, duration_seconds=3, rps=20)
    report = LocustLoadGenerator().run(plan)
    assert report.failures == 0
    # Each user sends at once, then one request every 0.1 s: at most 2 + 2 * 30.
    assert 30 <= report.requests <= 62, report
    assert len(seen) == report.requests


def test_a_replay_sends_only_its_files_rows_in_order(echo_server: tuple[str, list[Any]]) -> None:
    """The black-swan replay file, paced at 30 rps from 2 users for 2 s: every request is one
    of its rows as a V1 body, and the rows go out in the file's order. How many go out depends
    on the CPU Locust gets (on a starved machine a 2 s run sent 2), so only the pacing's upper
    bound is a count."""
    url, seen = echo_server
    path = "loadtests/payloads/market-regime-black-swan.jsonl"
    text = (DEFAULT_LOCUSTFILE.parents[1] / path).read_text()
    payloads = parse_replay_payloads(text, source=f"{path}@main")
    load = LoadTestConfig.model_validate({"users": 2, "protocol": "v1"})
    replay = GraphReplay(payloads=path, rps=30, duration_seconds=2)
    plan = replay_plan(load, replay, payloads, url=f"{url}/_tag/latest", model_name="blend")
    report = LocustLoadGenerator().run(plan)
    assert report.failures == 0
    assert 1 <= report.requests == len(seen) <= 64, report
    rows = [dict(row) for row in payloads.rows]
    assert {path for path, _, _ in seen} == {"/_tag/latest/v1/models/blend:predict"}
    sent = [body["instances"] for _, _, body in seen]
    assert all(len(instances) == 1 and instances[0] in rows for instances in sent)
    # Two users share one cursor; the server may record two concurrent requests swapped.
    indices = sorted(rows.index(instances[0]) for instances in sent)
    assert indices == list(range(len(sent))), indices


def test_a_cycling_run_goes_round_its_rows_again(echo_server: tuple[str, list[Any]]) -> None:
    """Two rows, one user at 20 rps for 3 s: the rows in order, then from the first again.
    About 60 go out; 3 show the wrap (a starved machine once sent 4 of 20 in a second)."""
    url, seen = echo_server
    rows = tuple(ROW | {"hour": hour} for hour in (1, 2))
    plan = LoadPlan(url, "m", "v1", rows, users=1, spawn_rate=1, duration_seconds=3, rps=20)
    report = LocustLoadGenerator().run(dataclasses.replace(plan, order="cycle"))
    assert report.requests == len(seen) >= 3, report
    assert [body["instances"][0]["hour"] for _, _, body in seen] == [
        1 + i % 2 for i in range(len(seen))
    ]


def test_v2_requests_carry_one_tensor_per_feature_and_the_headers(
    echo_server: tuple[str, list[Any]],
) -> None:
    """A V2 request is one [1]-shaped tensor per feature, typed, with the plan's headers."""
    url, seen = echo_server
    plan = LoadPlan(
        f"{url}/_tag/canary/",
        "fraud",
        "v2",
        (ROW | {"flagged": True},),
        users=1,
        spawn_rate=1,
        duration_seconds=1,
        headers={"X-Sluice-Revision-Tag": "canary"},
    )
    report = LocustLoadGenerator().run(plan)
    assert report.requests == len(seen) > 0
    path, headers, body = seen[0]
    assert path == "/_tag/canary/v2/models/fraud/infer"
    assert headers["X-Sluice-Revision-Tag"] == "canary"
    assert body == {
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [1], "data": [12.5]},
            {"name": "hour", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "merchant_category", "datatype": "BYTES", "shape": [1], "data": ["grocery"]},
            {"name": "country", "datatype": "BYTES", "shape": [1], "data": ["DE"]},
            {"name": "flagged", "datatype": "BOOL", "shape": [1], "data": [True]},
        ]
    }


def test_every_request_is_marked_synthetic(echo_server: tuple[str, list[Any]]) -> None:
    """Each request carries X-Sluice-Synthetic: load-test once, beside the plan's headers,
    even when the plan's headers try to set it otherwise."""
    url, seen = echo_server
    plan = LoadPlan(
        url,
        "fraud",
        "v1",
        (ROW,),
        users=1,
        spawn_rate=1,
        duration_seconds=1,
        headers={"X-Sluice-Revision-Tag": "canary", SYNTHETIC_HEADER.lower(): "live"},
    )
    report = LocustLoadGenerator().run(plan)
    assert report.requests == len(seen) > 0
    assert {tuple(headers.get_all(SYNTHETIC_HEADER)) for _, headers, _ in seen} == {(LOAD_TEST,)}
    assert {headers["X-Sluice-Revision-Tag"] for _, headers, _ in seen} == {"canary"}


def test_locustfile_names_the_controllers_synthetic_header() -> None:
    """The locustfile's copy of the header and value is the one the model server looks for."""
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import locustfile; "
        "print(json.dumps([locustfile.SYNTHETIC_HEADER, locustfile.SYNTHETIC_VALUE]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(DEFAULT_LOCUSTFILE.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [SYNTHETIC_HEADER, LOAD_TEST]


# -- failures to run --------------------------------------------------------------------------


def plan_for(url: str = "http://127.0.0.1:9") -> LoadPlan:
    return LoadPlan(url, "fraud", "v2", (ROW,), users=1, spawn_rate=1, duration_seconds=1)


def test_missing_locustfile_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A locustfile that is not there is named, with the fix, on one line."""
    with pytest.raises(
        ConfigError, match=r"^no locustfile at .*nowhere\.py; pass the path"
    ) as info:
        LocustLoadGenerator(tmp_path / "nowhere.py").run(plan_for())
    assert "\n" not in str(info.value)


def test_broken_locustfile_is_a_config_error_quoting_its_last_words(tmp_path: Path) -> None:
    """A locustfile that cannot be imported fails with the exit code and its own error line."""
    locustfile = tmp_path / "broken.py"
    locustfile.write_text("import no_such_module_for_sluice\n")
    with pytest.raises(ConfigError, match="exited with code 1 before it reported") as info:
        LocustLoadGenerator(locustfile).run(plan_for())
    assert "No module named 'no_such_module_for_sluice'" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_interpreter_is_a_config_error(tmp_path: Path) -> None:
    """An interpreter that does not exist is named as the thing to fix."""
    with pytest.raises(ConfigError, match="cannot run /nonexistent/python for Locust"):
        LocustLoadGenerator(python="/nonexistent/python").run(plan_for())


def test_locust_that_hangs_is_a_transient_timeout(tmp_path: Path) -> None:
    """A run that outlives its wall-clock budget is killed and reported as worth a retry."""
    locustfile = tmp_path / "hangs.py"
    locustfile.write_text("import time\n\ntime.sleep(60)\n")
    generator = LocustLoadGenerator(locustfile, request_timeout_seconds=1, grace_seconds=1)
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not finish within 3 s"):
        generator.run(plan_for())
    assert time.monotonic() - started < 10


def test_empty_payloads_are_refused_before_locust_starts() -> None:
    """Without rows there is nothing to send: an input error, not a run of failures."""
    plan = LoadPlan("http://127.0.0.1:9", "fraud", "v2", ())
    with pytest.raises(InputError, match="no payloads to send to fraud"):
        LocustLoadGenerator().run(plan)


# -- reading Locust's statistics --------------------------------------------------------------


def test_command_line_is_headless_json_and_bounded() -> None:
    """The plan becomes one headless, timed run printing JSON, host without a trailing slash."""
    plan = LoadPlan("http://h/_tag/c/", "m", "v1", (ROW,), users=3, spawn_rate=1.5)
    argv = locust_command("python", DEFAULT_LOCUSTFILE, plan, stop_timeout=10)
    assert argv[argv.index("-f") + 1] == str(DEFAULT_LOCUSTFILE)
    assert " ".join(argv[argv.index("--headless") :]) == (
        "--headless -u 3 -r 1.5 -t 20s --host http://h/_tag/c --json --only-summary "
        "--stop-timeout 10 --exit-code-on-error 0"
    )


def test_entries_are_merged_into_one_report() -> None:
    """Requests, failures and response times of every entry add up; the span is the duration."""
    stats = [
        {"num_requests": 90, "num_failures": 1, "response_times": {"3": 80, "45": 10}},
        {
            "num_requests": 10,
            "num_failures": 2,
            "response_times": {"3": 5, "1200": 5},
            "start_time": 100.0,
            "last_request_timestamp": 104.0,
        },
    ]
    report = report_from_stats(stats, fallback_duration=5.0)
    assert (report.requests, report.failures, report.duration_seconds) == (100, 3, 4.0)
    assert (report.p50_ms, report.p95_ms, report.p99_ms) == (3.0, 45.0, 1200.0)
    assert report.latency is not None
    assert dict(zip(report.latency.bounds, report.latency.counts, strict=True)) == (
        dict.fromkeys(LATENCY_BUCKETS_MS, 0) | {5: 85, 60: 10, 2000: 5}
    )


def test_no_requests_means_no_latencies() -> None:
    """An empty run reports zero requests, no percentiles and the planned duration."""
    report = report_from_stats([], fallback_duration=5.0)
    assert (report.requests, report.p99_ms, report.latency, report.rps) == (0, None, None, 0.0)


def test_percentile_is_nearest_rank() -> None:
    """The p-th percentile is the smallest time at or above p of the requests."""
    times = {float(ms): 1 for ms in range(1, 101)}
    assert [percentile_ms(times, p) for p in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]


def test_histogram_counts_a_bound_in_its_own_bucket() -> None:
    """A time equal to a bound is counted there (Prometheus's ``le``), beyond the last in inf."""
    histogram = histogram_from_response_times({5.0: 2, 6.0: 1, 250_000.0: 4})
    assert histogram.counts[:2] == (2, 1)
    assert histogram.counts[-1] == 4
    assert histogram.bounds[-1] == math.inf


def test_buckets_are_the_routers() -> None:
    """Locust's histogram has the router's (Knative's) bounds, so the two can be compared."""
    assert (*ROUTER_BUCKETS_MS, math.inf) == LATENCY_BUCKETS_MS


def test_locustfile_rounds_up_onto_every_bucket_bound() -> None:
    """The locustfile's rounding keeps a time on the same side of every bound as it was."""
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from locustfile import bucket_response_time_up as up; "
        "print(json.dumps([[up(b - 0.4), up(b), up(b + 0.01)] for b in json.loads(sys.argv[2])]))"
    )
    bounds = list(ROUTER_BUCKETS_MS)
    result = subprocess.run(
        [sys.executable, "-c", script, str(DEFAULT_LOCUSTFILE.parent), json.dumps(bounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    rounded = json.loads(result.stdout)
    assert [below <= bound for bound, (below, _, _) in zip(bounds, rounded, strict=True)] == [
        True
    ] * len(bounds)
    assert [at for _, at, _ in rounded] == bounds
    assert all(above > bound for bound, (_, _, above) in zip(bounds, rounded, strict=True))
