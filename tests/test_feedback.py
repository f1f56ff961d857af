"""Late labels: `POST /v1/feedback`, `sluice feedback FILE [--url]`, the demo's delayed labels."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests
from support.prediction_answers import answer
from support.readme_blocks import README

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.cli import main
from controller.commands.feedback import label_batches, read_labels
from controller.commands.feedback_route import build_feedback_route
from controller.serve.feedback import MAX_LABELS, feedback_route, parse_feedback
from controller.serve.server import Request, ServeMetrics, SluiceServer, sluice_routes
from controller.serve.webhooks import WebhookRejected
from controller.settings import Settings
from controller.shadow.class_samples import ClassSamples
from models.fraud_detector.data import LABEL, generate_transactions
from models.fraud_detector.feedback import delayed_labels, write_delayed_labels

TOKEN = "feedback-token-0123456789abcdef"
WAIT = 10.0
SENT_AT = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def logged(path: Path, *request_ids: str) -> Path:
    """A prediction log at ``path`` where champion and challenger answered each request."""
    with SqlitePredictionLog(path) as log:
        for request_id in request_ids:
            log.record(answer(request_id, "primary", score=0.2, model="fraud-detector"))
            log.record(answer(request_id, "shadow", score=0.7, model="fraud-detector"))
        assert log.flush()
    return path


def labelled(path: Path) -> list[tuple[str, float | str | None]]:
    return [(p.request_id, p.label) for p in SqlitePredictionLog(path).pairs(labelled=True)]


def feedback_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        count: int = connection.execute("SELECT count(*) FROM feedback").fetchone()[0]
    return count


def body(*labels: tuple[object, object]) -> bytes:
    return json.dumps({"labels": [{"request_id": r, "label": v} for r, v in labels]}).encode()


# -- parse_feedback ------------------------------------------------------------------------------


def test_parse_feedback_keeps_order_and_reads_integers_and_floats() -> None:
    """Each item becomes (request_id, outcome, label), label as a float and outcome label when
    unnamed, in the order sent; extra keys are fine."""
    raw = (
        b'{"labels": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": 0.5, "x": 1}]}'
    )
    assert parse_feedback(raw) == [("a", "label", 1.0), ("b", "label", 0.5)]
    assert parse_feedback(b'{"labels": []}') == []


def test_parse_feedback_reads_class_names_and_refuses_a_mix() -> None:
    """A classifier's labels are class names (JSON strings); one batch is all numbers or all
    names, and a number written as text is neither."""
    assert parse_feedback(body(("a", "volatile"), ("b", "calm"))) == [
        ("a", "label", "volatile"),
        ("b", "label", "calm"),
    ]
    with pytest.raises(WebhookRejected) as rejected:
        parse_feedback(body(("a", 1), ("b", "volatile")))
    assert rejected.value.reason == (
        "labels[1].label is a class name ('volatile') and labels[0].label a number: send "
        "numbers such as 0 and 1, or class names such as volatile, not both in one request"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"label": 1}', 'no "labels" list'),
        (b'{"labels": {"a": 1}}', 'no "labels" list'),
        (b'{"labels": ["a"]}', "labels[0] is not an object"),
        (body(("", 1)), "labels[0].request_id"),
        (body(("ok", 1), (7, 1)), "labels[1].request_id"),
        (body(("x" * 201, 1)), "labels[0].request_id"),
        (body(("a\nb", 1)), "labels[0].request_id"),
        (body((" padded", 1)), "labels[0].request_id"),
        (b'{"labels": [{"request_id": "a"}]}', "labels[0].label is not a finite number"),
        (body(("a", "1")), "labels[0].label is not a finite number"),
        (body(("a", True)), "labels[0].label is not a finite number"),
        (b'{"labels": [{"request_id": "a", "label": NaN}]}', "not JSON"),
        (b'{"labels": [{"request_id": "a", "label": Infinity}]}', "not JSON"),
        (b'{"labels": [{"request_id": "a", "label": 1e999}]}', "not a finite number"),
        # An integer beyond float's range was an OverflowError (500) before the strict model.
        (b'{"labels": [{"request_id": "a", "label": 1' + b"0" * 400 + b"}]}", "finite number"),
        (b'{"labels": [{"request_id": "a", "label": 1}, "b"]}', "labels[1] is not an object"),
        (body(*[(f"id-{i}", 1) for i in range(MAX_LABELS + 1)]), "at most 10,000"),
    ],
)
def test_parse_feedback_refuses_malformed_bodies_with_one_line(raw: bytes, reason: str) -> None:
    """A body that is not a batch of finite labels for printable ids is 400 with one line."""
    with pytest.raises(WebhookRejected) as rejected:
        parse_feedback(raw)
    assert rejected.value.status == 400
    assert reason in rejected.value.reason
    assert "\n" not in rejected.value.reason


# -- POST /v1/feedback ---------------------------------------------------------------------------


@dataclass
class FeedbackServer:
    url: str
    log: Path
    metrics: ServeMetrics

    def post(self, data: bytes, token: str | None = TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}/v1/feedback", data=data, headers=headers, timeout=WAIT)

    def deliveries(self, result: str) -> float:
        labels = {"source": "feedback", "result": result}
        value = self.metrics.registry.get_sample_value("sluice_webhook_deliveries_total", labels)
        return value or 0.0


@contextmanager
def serve_feedback(log: Path) -> Iterator[FeedbackServer]:
    """`sluice serve`'s routes with the feedback route into ``log``, on a free port."""
    metrics = ServeMetrics()
    routes = sluice_routes(
        metrics=metrics,
        status=dict,
        mlflow_trigger=lambda model, alias: False,
        mlflow_webhook_secret=None,
        feedback=feedback_route(token=TOKEN, store=SqlitePredictionLog(log), metrics=metrics),
    )
    with SluiceServer(routes) as server:
        yield FeedbackServer(server.url, log, metrics)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[FeedbackServer]:
    with serve_feedback(logged(tmp_path / "predictions.sqlite", "tx-1", "tx-2", "tx-3")) as server:
        yield server


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_anything_but_the_bearer_token_is_401(
    served: FeedbackServer, headers: dict[str, str]
) -> None:
    """Without the right bearer token the answer is 401 with WWW-Authenticate, nothing stored."""
    response = requests.post(
        f"{served.url}/v1/feedback", data=body(("tx-1", 1)), headers=headers, timeout=WAIT
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert feedback_rows(served.log) == 0
    assert served.deliveries("unauthorized") == 1


def test_a_refused_token_appears_in_no_log_line(
    served: FeedbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The rejection is logged in one line holding neither the sent nor the expected token."""
    with caplog.at_level(logging.DEBUG):
        served.post(body(("tx-1", 1)), token="guessed-token-abcdef")
    lines = [record.getMessage() for record in caplog.records]
    assert any("bearer token does not match" in line for line in lines)
    assert not any("guessed-token" in line or TOKEN in line for line in lines)


def test_a_malformed_body_is_400_and_stores_nothing(served: FeedbackServer) -> None:
    """One bad label refuses the whole batch with its reason."""
    response = served.post(body(("tx-1", 1), ("tx-2", "1")))
    assert response.status_code == 400
    assert response.json() == {
        "error": "labels[1].label is not a finite number or a class name (text of 1 to 100 "
        "characters that is not a number)"
    }
    assert feedback_rows(served.log) == 0
    assert served.deliveries("malformed") == 1


def test_labels_are_stored_and_joined_to_the_logged_pairs(served: FeedbackServer) -> None:
    """200 says how many were stored and how many ids have no answer; the judge sees the labels."""
    response = served.post(body(("tx-1", 1), ("tx-3", 0), ("tx-unknown", 1)))
    assert (response.status_code, response.json()) == (200, {"stored": 3, "not_in_log": 1})
    assert labelled(served.log) == [("tx-1", 1.0), ("tx-3", 0.0)]
    assert served.deliveries("stored") == 1


def test_class_names_are_stored_as_text(served: FeedbackServer) -> None:
    response = served.post(body(("tx-1", "volatile"), ("tx-2", "calm")))
    assert (response.status_code, response.json()) == (200, {"stored": 2, "not_in_log": 0})
    assert labelled(served.log) == [("tx-1", "volatile"), ("tx-2", "calm")]


def test_a_store_that_fails_answers_503(tmp_path: Path) -> None:
    """A log the route cannot write (here: another schema) is 503, so the sender retries."""
    path = tmp_path / "predictions.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    with serve_feedback(path) as server:
        response = server.post(body(("tx-1", 1)))
    assert response.status_code == 503
    assert response.json() == {"error": "the prediction log could not store the labels"}
    assert server.deliveries("error") == 1


def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """The route has a size limit of its own, whatever the server's."""
    route = feedback_route(
        token=TOKEN, store=SqlitePredictionLog(tmp_path / "log.db"), metrics=ServeMetrics(),
        max_body_bytes=64,
    )  # fmt: skip
    headers = {"authorization": f"Bearer {TOKEN}"}
    response = route(Request("POST", "/v1/feedback", headers, body(("x" * 80, 1))))
    assert response.status == 413


def test_without_a_token_the_route_is_not_served(tmp_path: Path) -> None:
    """No feedback_token, no route: sluice serve answers 404."""
    assert build_feedback_route(Settings(state_dir=tmp_path), metrics=ServeMetrics()) is None
    routes = sluice_routes(
        metrics=ServeMetrics(), status=dict, mlflow_trigger=lambda m, a: False,
        mlflow_webhook_secret=None,
        feedback=build_feedback_route(Settings(state_dir=tmp_path), metrics=ServeMetrics()),
    )  # fmt: skip
    with SluiceServer(routes) as server:
        response = requests.post(f"{server.url}/v1/feedback", data=b"{}", timeout=WAIT)
    assert response.status_code == 404


def test_serve_writes_to_the_local_stacks_prediction_log_by_default(tmp_path: Path) -> None:
    """With a token, the route's log is <state_dir>/local/predictions.sqlite, opened at start."""
    settings = Settings(state_dir=tmp_path / "state", feedback_token=TOKEN)
    assert build_feedback_route(settings, metrics=ServeMetrics()) is not None
    assert (tmp_path / "state" / "local" / "predictions.sqlite").is_file()


# -- sluice feedback -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without sluice.yaml, the log path set and no feedback token."""
    monkeypatch.chdir(tmp_path)
    for name in ("SLUICE_CONFIG", "SLUICE_FEEDBACK_TOKEN", "SLUICE_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "predictions.sqlite"
    monkeypatch.setenv("SLUICE_PREDICTION_LOG_PATH", str(log))
    return log


def sluice(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["feedback", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n\n", "is empty"),
        ("header.csv", "request_id,label\n", "has no rows"),
        ("columns.csv", "request_id\ntx-1\n", "lacks the column label"),
        ("no-id.csv", "id,label\ntx-1,1\n", "lacks the column request_id"),
        (
            "words.csv",
            "request_id,label\ntx-1,1\ntx-2,fraud\n",
            "label mixes numbers and class names (first name: line 3, 'fraud'; first number: "
            "line 2, '1')",
        ),
        (
            "gaps.csv",
            "request_id,label\ntx-1,\n",
            "has no values in label (every cell is empty)",
        ),
        ("spaces.csv", "request_id,label\ntx-1,calm\ntx-2, calm\n", "(first: line 3, ' calm')"),
        ("ids.csv", "request_id,label\ntx-1,1\n,0\n", "request_id at line 3"),
        ("labels.txt", "request_id,label\ntx-1,1\n", "give a .csv or .parquet file"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    message: str,
) -> None:
    """A missing, empty or malformed file is refused before the log is touched."""
    logged(cli_env, "tx-1", "tx-2")
    path = cli_env.parent / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = sluice(capsys, str(path))
    assert code == 2
    assert err.startswith("sluice: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert out == ""
    assert feedback_rows(cli_env) == 0


def test_labels_go_straight_into_the_prediction_log(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --url the file's labels are written to the log, the last of a repeated id wins;
    the label column alone is stored (an export's confirmed_at is not ground truth)."""
    logged(cli_env, "tx-1", "tx-2", "tx-3")
    path = cli_env.parent / "labels.csv"
    path.write_text(
        "request_id,label,confirmed_at\ntx-1,0,a\ntx-2,0,b\ntx-9,1,c\ntx-1,1,d\n", encoding="utf-8"
    )
    code, out, err = sluice(capsys, str(path))
    assert (code, err) == (0, "")
    assert out == "stored 3 labels (1 request ids not in the log)\n"
    assert labelled(cli_env) == [("tx-1", 1.0), ("tx-2", 0.0)]
    assert feedback_rows(cli_env) == 3


def test_parquet_labels_reach_the_default_log_under_state_dir(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet file works too, and the default log is <state_dir>/local/predictions.sqlite."""
    monkeypatch.delenv("SLUICE_PREDICTION_LOG_PATH")
    monkeypatch.setenv("SLUICE_STATE_DIR", str(cli_env.parent / "state"))
    log = logged(cli_env.parent / "state" / "local" / "predictions.sqlite", "7", "8")
    path = cli_env.parent / "labels.parquet"
    pd.DataFrame({"request_id": [7, 8], "label": [True, False]}).to_parquet(path)
    code, out, _ = sluice(capsys, str(path))
    assert code == 0
    assert out == "stored 2 labels (0 request ids not in the log)\n"
    assert labelled(log) == [("7", 1.0), ("8", 0.0)]


def test_class_name_labels_reach_the_log_and_the_multiclass_judge(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sluice feedback FILE` as the README's "Late labels" shows it for the market-regime
    classifier: the regime each day really was, by request id; the judge reads them as
    classes."""
    section = README.read_text(encoding="utf-8").split("\n## Late labels", 1)[1]
    (block,) = [
        b for b in re.findall(r"```console\n(.*?)```", section, re.DOTALL) if "regimes" in b
    ]
    shown = block.split("$ cat regimes.csv\n", 1)[1]
    content, rest = shown.split("$ ", 1)
    command, printed = rest.split("\n", 1)
    assert command == "sluice feedback regimes.csv"
    (cli_env.parent / "regimes.csv").write_text(content, encoding="utf-8")
    days = {"day-1": "volatile", "day-2": "calm", "day-3": "black_swan"}
    with SqlitePredictionLog(cli_env) as log:
        for request_id in days:
            decided = {"predictions": [{"regime": "calm", "p_calm": 0.7, "p_volatile": 0.3}]}
            for role in ("primary", "shadow"):
                log.record(answer(request_id, role, output=json.dumps(decided).encode()))
        assert log.flush()
    code, out, err = sluice(capsys, *command.split()[2:])
    assert (code, err) == (0, "")
    assert out == printed
    assert labelled(cli_env) == list(days.items())
    samples = ClassSamples.from_pairs(
        SqlitePredictionLog(cli_env).pairs(), ("calm", "volatile", "black_swan"),
        decision_field="regime",
    )  # fmt: skip
    assert samples.labels.tolist() == [1, 0, 2]


def test_no_prediction_log_is_exit_2(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Writing directly needs an existing log; the message names it and the alternatives."""
    path = cli_env.parent / "labels.csv"
    path.write_text("request_id,label\ntx-1,1\n", encoding="utf-8")
    code, _, err = sluice(capsys, str(path))
    assert code == 2
    assert f"no prediction log at {cli_env}" in err
    assert not cli_env.exists()


def test_url_mode_posts_batches_to_a_running_serve(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --url the labels travel through POST /v1/feedback in batches of 5,000."""
    log = logged(cli_env.parent / "served.sqlite", *(f"tx-{i}" for i in range(0, 5003, 1000)))
    path = cli_env.parent / "labels.csv"
    frame = pd.DataFrame({"request_id": [f"tx-{i}" for i in range(5003)], "label": 1})
    frame.to_csv(path, index=False)
    monkeypatch.setenv("SLUICE_FEEDBACK_TOKEN", TOKEN)
    with serve_feedback(log) as server:
        code, out, err = sluice(capsys, str(path), "--url", server.url)
    assert (code, err) == (0, "")
    assert out == "stored 5003 labels (4997 request ids not in the log)\n"
    assert server.deliveries("stored") == 2
    assert [request_id for request_id, _ in labelled(log)] == [
        f"tx-{i}" for i in range(0, 5003, 1000)
    ]
    assert feedback_rows(log) == 5003
    assert not cli_env.exists()  # the local log was not touched


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "--url needs SLUICE_FEEDBACK_TOKEN"), ("wrong-token-abcdef", "refused the token")],
)
def test_url_mode_without_the_right_token_is_exit_2(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    message: str,
) -> None:
    """No token, or one the server refuses, is one line and exit 2; the token is never shown."""
    log = logged(cli_env.parent / "served.sqlite", "tx-1")
    path = cli_env.parent / "labels.csv"
    path.write_text("request_id,label\ntx-1,1\n", encoding="utf-8")
    if token is not None:
        monkeypatch.setenv("SLUICE_FEEDBACK_TOKEN", token)
    with serve_feedback(log) as server:
        code, _, err = sluice(capsys, str(path), "--url", server.url)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "wrong-token" not in err
    assert feedback_rows(log) == 0


def test_url_mode_with_nothing_listening_is_exit_3(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable server is a transient failure: exit 3 with one line."""
    server = SluiceServer({}).start()
    url = server.url
    server.stop()
    path = cli_env.parent / "labels.csv"
    path.write_text("request_id,label\ntx-1,1\n", encoding="utf-8")
    monkeypatch.setenv("SLUICE_FEEDBACK_TOKEN", TOKEN)
    code, _, err = sluice(capsys, str(path), "--url", url)
    assert code == 3
    assert f"cannot reach sluice serve at {url}/v1/feedback" in err
    assert err.count("\n") == 1


def test_label_batches_stay_under_count_and_size_limits() -> None:
    """Batches are consecutive, at most max_labels long, and long ids make them shorter."""
    labels = [(f"id-{i}", "label", 1.0) for i in range(12)]
    assert [len(b) for b in label_batches(labels, max_labels=5)] == [5, 5, 2]
    long_ids = [("x" * 200, "label", 0.0)] * 10
    batches = list(label_batches(long_ids, max_bytes=1000))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [item for b in batches for item in b] == long_ids


# -- the demo's delayed labels -------------------------------------------------------------------


def test_delayed_labels_are_the_true_labels_confirmed_within_the_window() -> None:
    """Each confirmed label is the sent row's is_fraud, confirmed within after_days, in order."""
    sent = generate_transactions(week=1, rows=2000, seed=3)
    ids = [f"req-{i}" for i in range(len(sent))]
    labels = delayed_labels(ids, sent, sent_at=SENT_AT, after_days=2)
    truth = dict(zip(ids, sent[LABEL], strict=True))
    assert list(labels.columns) == ["request_id", "label", "confirmed_at"]
    pairs = zip(labels["request_id"], labels["label"], strict=True)
    assert all(truth[request_id] == label for request_id, label in pairs)
    times = [datetime.fromisoformat(t) for t in labels["confirmed_at"]]
    assert times == sorted(times)
    assert times[0] >= SENT_AT
    assert times[-1] <= SENT_AT + timedelta(days=2)
    # Mean delay 3 days: about 1 - exp(-2/3) = 49 % are confirmed after two days.
    assert 0.44 < len(labels) / len(sent) < 0.54


def test_more_labels_are_confirmed_as_days_pass_and_the_same_seed_repeats() -> None:
    """Later cut-offs confirm a superset; the same seed gives the same file."""
    sent = generate_transactions(rows=500)
    ids = [f"req-{i}" for i in range(len(sent))]
    early = delayed_labels(ids, sent, sent_at=SENT_AT, after_days=1)
    late = delayed_labels(ids, sent, sent_at=SENT_AT, after_days=10)
    assert set(early["request_id"]) < set(late["request_id"])
    pd.testing.assert_frame_equal(early, delayed_labels(ids, sent, sent_at=SENT_AT, after_days=1))
    assert delayed_labels(ids, sent, sent_at=SENT_AT, after_days=0).empty
    with pytest.raises(ValueError, match="request ids"):
        delayed_labels(ids[:-1], sent, sent_at=SENT_AT, after_days=1)


def test_the_demo_file_is_what_sluice_feedback_reads(tmp_path: Path) -> None:
    """The CSV written for the demo reads back as the same labels."""
    sent = generate_transactions(rows=300)
    ids = [f"req-{i}" for i in range(len(sent))]
    path = tmp_path / "confirmed.csv"
    count = write_delayed_labels(path, ids, sent, sent_at=SENT_AT, after_days=5)
    expected = delayed_labels(ids, sent, sent_at=SENT_AT, after_days=5)
    assert count == len(expected) > 0
    assert read_labels(path) == [
        (r, float(label))
        for r, label in zip(expected["request_id"], expected["label"], strict=True)
    ]


# -- named outcomes ------------------------------------------------------------------------------


def items(*rows: dict[str, object]) -> bytes:
    return json.dumps({"labels": list(rows)}).encode()


def test_parse_feedback_reads_named_outcomes_and_refuses_a_mix_within_one() -> None:
    """An item may name its outcome; one request may carry class names of one outcome and
    numbers of another, but not both kinds in one outcome."""
    raw = items(
        {"request_id": "day-1", "outcome": "regime", "label": "volatile"},
        {"request_id": "day-1", "outcome": "up", "label": 0},
        {"request_id": "day-2", "label": 1},
    )
    assert parse_feedback(raw) == [
        ("day-1", "regime", "volatile"), ("day-1", "up", 0.0), ("day-2", "label", 1.0)
    ]  # fmt: skip
    mixed = items(
        {"request_id": "day-1", "outcome": "regime", "label": "calm"},
        {"request_id": "day-2", "outcome": "regime", "label": 1},
    )
    with pytest.raises(WebhookRejected) as rejected:
        parse_feedback(mixed)
    assert rejected.value.reason.startswith(
        "labels[0].label is a class name ('calm') and labels[1].label a number (outcome regime)"
    )


@pytest.mark.parametrize("bad", ["", "Up", "up day", "9lives", "x" * 64, 7, None])
def test_an_item_whose_outcome_is_not_a_name_is_400_with_one_line(bad: object) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        parse_feedback(
            items({"request_id": "a", "label": 1}, {"request_id": "b", "outcome": bad, "label": 1})
        )
    assert rejected.value.status == 400
    assert rejected.value.reason == (
        "labels[1].outcome is not an outcome name (a lower-case letter, then up to 62 "
        "lower-case letters, digits or _)"
    )


def test_named_outcomes_are_stored_through_the_route(served: FeedbackServer) -> None:
    """The route stores each item under its outcome; label stays the default."""
    response = served.post(
        items(
            {"request_id": "tx-1", "outcome": "regime", "label": "calm"},
            {"request_id": "tx-1", "outcome": "up", "label": 1},
            {"request_id": "tx-2", "label": 0},
        )
    )
    assert (response.status_code, response.json()) == (200, {"stored": 3, "not_in_log": 0})
    log = SqlitePredictionLog(served.log)
    assert log.outcomes(["tx-1", "tx-2"], "regime") == {"tx-1": "calm"}
    assert log.outcomes(["tx-1", "tx-2"], "up") == {"tx-1": 1.0}
    assert labelled(served.log) == [("tx-2", 0.0)]
    bad = served.post(items({"request_id": "tx-1", "outcome": "Up", "label": 1}))
    assert bad.status_code == 400
    assert "labels[0].outcome is not an outcome name" in bad.json()["error"]
    assert served.deliveries("malformed") == 1


def named_outcomes_block() -> tuple[str, str, str]:
    """The README's file of named outcomes, its command and what it prints."""
    section = README.read_text(encoding="utf-8").split("\n### Named outcomes", 1)[1]
    (block,) = re.findall(r"```console\n(.*?)```", section, re.DOTALL)[:1]
    shown = block.split("$ cat graph-truth.csv\n", 1)[1]
    content, rest = shown.split("$ ", 1)
    command, printed = rest.split("\n", 1)
    return content, command, printed


def test_the_readmes_graph_file_stores_each_outcome_and_skips_empty_cells(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`request_id,regime,up` as "Named outcomes" shows it: each column an outcome of the same
    request ids, an empty cell not arrived (skipped), and each judge's pairs read its own."""
    content, command, printed = named_outcomes_block()
    assert command == "sluice feedback graph-truth.csv --outcome regime --outcome up"
    logged(cli_env, "day-1", "day-2", "day-3")
    (cli_env.parent / "graph-truth.csv").write_text(content, encoding="utf-8")
    code, out, err = sluice(capsys, str(cli_env.parent / "graph-truth.csv"), *command.split()[3:])
    assert (code, err) == (0, "")
    assert out == printed
    log = SqlitePredictionLog(cli_env)
    days = ["day-1", "day-2", "day-3", "day-9"]
    assert log.outcomes(days, "regime") == {
        "day-1": "volatile", "day-2": "calm", "day-3": "black_swan"
    }  # fmt: skip
    assert log.outcomes(days, "up") == {"day-1": 0.0, "day-2": 1.0, "day-9": 1.0}
    assert [(p.request_id, p.label) for p in log.pairs(outcome="up")] == [
        ("day-1", 0.0), ("day-2", 1.0), ("day-3", None)
    ]  # fmt: skip
    assert labelled(cli_env) == []  # the default outcome, label, is not in the file
    assert feedback_rows(cli_env) == 6


def test_a_parquet_files_missing_values_are_skipped(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN and None in a Parquet file are outcomes not arrived yet."""
    logged(cli_env, "a", "b")
    path = cli_env.parent / "outcomes.parquet"
    pd.DataFrame(
        {"request_id": ["a", "b"], "click": [1.0, float("nan")], "regime": [None, "calm"]}
    ).to_parquet(path)
    code, out, err = sluice(capsys, str(path), "--outcome", "click", "--outcome", "regime")
    assert (code, err) == (0, "")
    assert out == "stored 2 values: 1 click, 1 regime (0 request ids not in the log)\n"
    log = SqlitePredictionLog(cli_env)
    assert log.outcomes(["a", "b"], "click") == {"a": 1.0}
    assert log.outcomes(["a", "b"], "regime") == {"b": "calm"}


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (
            "request_id,regime,Next Day Up\nday-1,calm,1\n",
            ("--outcome", "regime", "--outcome", "Next Day Up"),
            "--outcome 'Next Day Up' is not an outcome name (a lower-case letter, then up to 62 "
            "lower-case letters, digits or _); rename the column to 'next_day_up' and name it so",
        ),
        ("request_id,label,2nd\nday-1,1,0\n", ("--outcome", "2nd"), "'2nd' is not an outcome name"),
        ("request_id,regime,up\nday-1,calm,1\n", (), "lacks the column label"),
        (
            "request_id,regime,up\nday-1,calm,1\nday-2,1,0\n",
            ("--outcome", "regime", "--outcome", "up"),
            "regime mixes numbers and class names (first name: line 2, 'calm'; first number: "
            "line 3, '1')",
        ),
        (
            "request_id,regime,up\nday-1,calm,nan\n",
            ("--outcome", "regime", "--outcome", "up"),
            "up is not a number or a class name in 1 of 1 rows",
        ),
        ("request_id,regime\nday-1,calm\n", ("--outcome", "up"), "lacks the column up"),
        ("request_id,regime,up\nday-1,,\n,calm,1\n", ("--outcome", "up"), "request_id at line 3"),
        (
            "request_id,regime,up\nday-1,,\n",
            ("--outcome", "regime", "--outcome", "up"),
            "has no values in regime, up",
        ),
    ],
)
def test_a_bad_outcome_column_is_one_line_exit_2_and_nothing_is_written(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    args: tuple[str, ...],
    message: str,
) -> None:
    logged(cli_env, "day-1")
    path = cli_env.parent / "truth.csv"
    path.write_text(content, encoding="utf-8")
    code, out, err = sluice(capsys, str(path), *args)
    assert (code, out) == (2, "")
    assert err.startswith("sluice: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert feedback_rows(cli_env) == 0


def test_an_exports_other_columns_are_stored_only_when_named(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export's confirmed_at is a valid outcome name, yet without --outcome only label is
    stored; --outcome stores the columns it names."""
    logged(cli_env, "tx-1")
    path = cli_env.parent / "export.csv"
    path.write_text("request_id,label,confirmed_at\ntx-1,1,2025-03-01\n", encoding="utf-8")
    code, out, _ = sluice(capsys, str(path))
    assert (code, out) == (0, "stored 1 labels (0 request ids not in the log)\n")
    assert SqlitePredictionLog(cli_env).outcomes(["tx-1"], "confirmed_at") == {}
    code, out, _ = sluice(capsys, str(path), "--outcome", "label", "--outcome", "confirmed_at")
    assert (code, out) == (
        0,
        "stored 2 values: 1 label, 1 confirmed_at (0 request ids not in the log)\n",
    )
    assert SqlitePredictionLog(cli_env).outcomes(["tx-1"], "confirmed_at") == {"tx-1": "2025-03-01"}


def test_url_mode_sends_each_items_outcome(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --url a named outcome travels with each item; label items stay as they were."""
    log = logged(cli_env.parent / "served.sqlite", "day-1", "day-2")
    path = cli_env.parent / "truth.csv"
    path.write_text("request_id,label,regime,up\nday-1,1,calm,\nday-2,,volatile,0\n", "utf-8")
    monkeypatch.setenv("SLUICE_FEEDBACK_TOKEN", TOKEN)
    with serve_feedback(log) as server:
        code, out, err = sluice(
            capsys, str(path), "--url", server.url,
            *("--outcome", "label", "--outcome", "regime", "--outcome", "up"),
        )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == "stored 4 values: 1 label, 2 regime, 1 up (0 request ids not in the log)\n"
    store = SqlitePredictionLog(log)
    assert store.outcomes(["day-1", "day-2"], "regime") == {"day-1": "calm", "day-2": "volatile"}
    assert store.outcomes(["day-1", "day-2"], "up") == {"day-2": 0.0}
    assert labelled(log) == [("day-1", 1.0)]
    assert not cli_env.exists()


def test_label_batches_count_a_named_outcomes_bytes() -> None:
    """A named outcome adds its name to each item's size, so batches stay under max_bytes."""
    named = [("x" * 200, "next_day_direction", 0.0)] * 10
    batches = list(label_batches(named, max_bytes=1000))
    assert max(len(b) for b in batches) == 3
    sizes = [len(json.dumps({"labels": [
        {"request_id": r, "outcome": o, "label": v} for r, o, v in batch
    ]})) for batch in batches]  # fmt: skip
    assert max(sizes) <= 1000
