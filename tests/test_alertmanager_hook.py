"""`POST /hooks/alertmanager`: bearer auth, Alertmanager's format, one retraining per cool-down."""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from support.github_api import GitHubApiServer
from support.github_state import Dispatch
from support.gitrepo import GitRemote

from controller.backends.github_forge import GitHubForge
from controller.backends.local_retrain import LocalRetrain
from controller.backends.mlflow_registry import MlflowRegistry
from controller.commands.retrain import build_alertmanager_hook, build_retrain_starter
from controller.domain import RetrainRequest
from controller.errors import (
    ConfigError,
    ForgeUnavailable,
    ModelNotFound,
    RegistryUnavailable,
)
from controller.local.services import MlflowService
from controller.null_ports import NoForge
from controller.retrain.command import RETRAIN_ENVIRONMENT_VARIABLES, render_command
from controller.retrain.forge_dispatch import ForgeRetrain
from controller.retrain.record import (
    RetrainRecord,
    cooldown_tag,
    describe_retraining,
    last_retrain_tag,
    turned_away_tag,
)
from controller.retrain.registry_state import RegistryCooldown
from controller.retrain.retrainer import Retrainer, RetrainOutcome
from controller.serve.alertmanager_hook import (
    alertmanager_hook_route,
    parse_notification,
    retrain_requests,
)
from controller.serve.server import Request, Response, ServeMetrics, SluiceServer, sluice_routes
from controller.serve.webhooks import WebhookRejected
from controller.settings import Settings
from controller.testing import ManualClock

TOKEN = "am-token-0123456789abcdef"
GITHUB_TOKEN = "ghp_alertHookToken0123456789abcdefABCDEF"
REPO = "acme/gitops"
HOUR = 3600.0
SINCE = "2025-11-22T07:00:00+00:00"
LABELS = {"model": "fraud-detector", "environment": "staging"}


# -- fakes ---------------------------------------------------------------------------------------


class RecordingStarter:
    """A retrain starter that records each start, and can fail the next ones."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str, tuple[str, ...]]] = []
        self.requests: list[RetrainRequest] = []
        self.failures: list[Exception] = []

    def start(self, request: RetrainRequest) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.requests.append(request)
        self.starts.append((request.model, request.environment, request.features))
        return f"started {request.model} {request.environment}"


class MemoryTags:
    """Registered-model tags in memory, for models that exist; can fail the next calls."""

    def __init__(self, *models: str) -> None:
        self.tags: dict[str, dict[str, str]] = {model: {} for model in models}
        self.failures: list[Exception] = []

    def registered_model_tags(self, name: str) -> dict[str, str]:
        if self.failures:
            raise self.failures.pop(0)
        if name not in self.tags:
            raise ModelNotFound(f"model {name!r} not found")
        return dict(self.tags[name])

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.tags[name][key] = value


# -- helpers -------------------------------------------------------------------------------------


def alert(
    name: str = "SluiceFeatureDrift",
    *,
    status: str = "firing",
    model: str = "fraud-detector",
    environment: str = "staging",
    features: str | None = "amount,hour",
    **labels: str,
) -> dict[str, Any]:
    """One alert as the drift rules make it."""
    annotations = {"summary": f"{model} drifts"}
    if features is not None:
        annotations["drifted_features"] = features
    return {
        "status": status,
        "labels": {
            "alertname": name,
            "model": model,
            "environment": environment,
            "namespace": f"models-{environment}",
            "version": "8",
            "severity": "warning",
            **labels,
        },
        "annotations": annotations,
        "startsAt": "2025-11-22T07:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": uuid.uuid4().hex[:16],
    }


def notification(*alerts: dict[str, Any], version: str = "4") -> bytes:
    """An Alertmanager webhook notification, version 4."""
    firing = any(a["status"] == "firing" for a in alerts)
    return json.dumps(
        {
            "version": version,
            "groupKey": '{}:{alertname="SluiceFeatureDrift"}',
            "truncatedAlerts": 0,
            "status": "firing" if firing else "resolved",
            "receiver": "sluice",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager",
            "alerts": list(alerts),
        }
    ).encode()


def post(route: Any, body: bytes, token: str | None = TOKEN, scheme: str = "Bearer") -> Response:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"{scheme} {token}"
    response: Response = route(Request("POST", "/hooks/alertmanager", headers, body))
    return response


def answer(response: Response) -> Any:
    return json.loads(response.body)


class Hook:
    """The route with a recording starter, in-memory tags and a settable clock."""

    def __init__(self, *models: str, cooldown: float = HOUR) -> None:
        self.starter = RecordingStarter()
        self.tags = MemoryTags(*(models or ("fraud-detector",)))
        self.clock = ManualClock(1_750_000_000.0)
        self.metrics = ServeMetrics()
        self.retrainer = Retrainer(
            self.starter, RegistryCooldown(self.tags), cooldown_seconds=cooldown, clock=self.clock
        )
        self.route = alertmanager_hook_route(
            token=TOKEN, retrainer=self.retrainer, metrics=self.metrics
        )

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def hook() -> Hook:
    return Hook()


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "scheme"), [(None, "Bearer"), ("wrong-token-value", "Bearer"), (TOKEN, "Basic")]
)
def test_anything_but_the_bearer_token_is_unauthorized(
    hook: Hook, token: str | None, scheme: str
) -> None:
    """No token, a wrong one, or another scheme: 401, counted, and nothing starts."""
    response = post(hook.route, notification(alert()), token, scheme)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert hook.starter.starts == []
    source = {"source": "alertmanager"}
    assert hook.count("sluice_webhook_deliveries_total", **source, result="unauthorized") == 1


def test_rejection_is_one_log_line_without_the_token(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong token is logged once, and neither token appears in the log or the answer."""
    with caplog.at_level(logging.INFO):
        response = post(hook.route, notification(alert()), "guessed-token-xyz")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "bearer token does not match" in lines[0]
    for text in (*lines, response.body.decode()):
        assert TOKEN not in text
        assert "guessed-token-xyz" not in text


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", notification(alert(), version="3"), b'{"version": "4"}']
)
def test_a_body_that_is_no_notification_is_a_bad_request(hook: Hook, body: bytes) -> None:
    """Authenticated but not a version 4 notification: 400, counted as malformed."""
    assert post(hook.route, body).status == 400
    assert hook.starter.starts == []
    assert (
        hook.count("sluice_webhook_deliveries_total", source="alertmanager", result="malformed")
        == 1
    )


# -- parsing -------------------------------------------------------------------------------------


def test_firing_drift_alert_starts_one_retraining_with_its_features(hook: Hook) -> None:
    """The alert's model, environment and drifted features reach the starter."""
    response = post(hook.route, notification(alert(features="amount, hour ,merchant_category")))
    assert response.status == 200
    assert hook.starter.starts == [
        ("fraud-detector", "staging", ("amount", "hour", "merchant_category"))
    ]
    (retrain,) = answer(response)["retrains"]
    assert (retrain["model"], retrain["environment"], retrain["result"]) == (
        "fraud-detector",
        "staging",
        "started",
    )
    labels = {"model": "fraud-detector", "environment": "staging", "result": "started"}
    assert hook.count("sluice_retrains_total", **labels) == 1


def test_alerts_of_one_model_and_environment_merge(hook: Hook) -> None:
    """Feature and prediction drift of one model merge; another environment is its own."""
    body = notification(
        alert(features="amount"),
        alert("SluicePredictionDrift", features=None),
        alert(features="hour", feature="country"),
        alert(environment="production", features="amount"),
    )
    parsed = parse_notification(body)
    requests_, skipped = retrain_requests(parsed, {"SluiceFeatureDrift", "SluicePredictionDrift"})
    two = ("SluiceFeatureDrift", "SluicePredictionDrift")
    assert requests_ == [
        RetrainRequest("fraud-detector", "staging", ("amount", "country", "hour"), SINCE, "8", two),
        RetrainRequest(
            "fraud-detector", "production", ("amount",), SINCE, "8", ("SluiceFeatureDrift",)
        ),
    ]
    assert skipped == []


def test_resolved_and_unrelated_alerts_start_nothing(hook: Hook) -> None:
    """A resolved drift alert and a firing alert of another kind are ignored (200)."""
    body = notification(alert(status="resolved"), alert("SluiceCanaryFailed"))
    response = post(hook.route, body)
    assert (response.status, answer(response)) == (200, {"result": "ignored"})
    assert hook.starter.starts == []


def test_alert_without_valid_names_is_skipped(hook: Hook) -> None:
    """Labels the train workflow would refuse never reach a dispatch."""
    parsed = parse_notification(notification(alert(model="Fraud Detector; rm -rf /")))
    requests_, skipped = retrain_requests(parsed, {"SluiceFeatureDrift"})
    assert requests_ == []
    assert skipped == ["SluiceFeatureDrift has no valid model and environment labels"]


def malformed(change: dict[str, Any]) -> bytes:
    """A notification with two good alerts, changed by ``change`` (``None`` removes a key)."""
    payload = json.loads(notification(alert(), alert("SluicePredictionDrift")))
    for path, value in change.items():
        *parents, key = path.split(".")
        target = payload
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[int(key) if key.isdigit() else key]
        else:
            target[int(key) if key.isdigit() else key] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 4}, "not an Alertmanager notification of version 4"),
        ({"alerts": None}, "alerts is not a list of objects"),
        ({"alerts": {"0": {}}}, "alerts is not a list of objects"),
        ({"alerts.1": "firing"}, "alerts[1] is not an object"),
        ({"alerts.1.status": "pending"}, "alerts[1].status is neither firing nor resolved"),
        ({"alerts.0.status": None}, "alerts[0].status is neither firing nor resolved"),
        ({"alerts.1.labels.version": 8}, "alerts[1].labels is not an object of strings"),
        ({"alerts.0.annotations": ["amount"]}, "alerts[0].annotations is not an object of strings"),
    ],
)
def test_a_malformed_notification_names_the_bad_field(change: dict[str, Any], reason: str) -> None:
    """Each malformed part of a notification is a 400 whose one-line reason names the field
    and, for an alert, its index (they used to say "an alert's status/labels/annotations" or
    "alerts is not a list of objects" without saying which)."""
    with pytest.raises(WebhookRejected) as raised:
        parse_notification(malformed(change))
    assert (raised.value.status, raised.value.reason) == (400, reason)


def test_informational_fields_are_read_as_text_whatever_their_type() -> None:
    """receiver, groupKey, status and an alert's fingerprint decide nothing: any JSON value
    is kept as text, missing labels and annotations are empty, unknown keys are ignored."""
    body = malformed({"receiver": 3, "groupKey": None, "alerts.0.fingerprint": 12})
    parsed = parse_notification(body)
    assert (parsed.receiver, parsed.group_key, parsed.status) == ("3", "", "firing")
    assert parsed.alerts[0].fingerprint == "12"
    bare = parse_notification(b'{"version": "4", "alerts": [{"status": "resolved", "x": 1}]}')
    assert (bare.alerts[0].labels, bare.alerts[0].annotations, bare.alerts[0].name) == ({}, {}, "")


# -- cool-down -----------------------------------------------------------------------------------


def test_second_alert_inside_the_cooldown_starts_none(hook: Hook) -> None:
    """A repeat 59 minutes later is turned away; one after the hour starts again."""
    assert answer(post(hook.route, notification(alert())))["retrains"][0]["result"] == "started"
    hook.clock.advance(HOUR - 60)
    again = answer(post(hook.route, notification(alert(), alert("SluicePredictionDrift"))))
    assert [r["result"] for r in again["retrains"]] == ["cooldown"]
    assert len(hook.starter.starts) == 1
    hook.clock.advance(61)
    assert answer(post(hook.route, notification(alert())))["retrains"][0]["result"] == "started"
    assert len(hook.starter.starts) == 2


def test_cooldown_is_per_model_and_environment(hook: Hook) -> None:
    """Production's alert starts its own retraining while staging cools down."""
    post(hook.route, notification(alert()))
    response = post(hook.route, notification(alert(environment="production")))
    assert [r["result"] for r in answer(response)["retrains"]] == ["started"]
    assert [start[1] for start in hook.starter.starts] == ["staging", "production"]


def test_cooldown_survives_a_restart(hook: Hook) -> None:
    """A new process reading the same registry tags turns the repeat away."""
    post(hook.route, notification(alert()))
    stamp = hook.tags.tags["fraud-detector"][cooldown_tag("staging")]
    assert stamp == "2025-06-15T15:06:40+00:00"
    restarted = Retrainer(
        hook.starter, RegistryCooldown(hook.tags), cooldown_seconds=HOUR, clock=hook.clock
    )
    route = alertmanager_hook_route(token=TOKEN, retrainer=restarted, metrics=ServeMetrics())
    hook.clock.advance(600)
    assert answer(post(route, notification(alert())))["retrains"][0]["result"] == "cooldown"
    assert len(hook.starter.starts) == 1


def test_unreachable_registry_answers_503_and_starts_nothing(hook: Hook) -> None:
    """Without the cool-down's state nothing starts; Alertmanager is asked to deliver again."""
    hook.tags.failures.append(RegistryUnavailable("MLflow registry at x is unreachable"))
    response = post(hook.route, notification(alert()))
    assert response.status == 503
    assert answer(response)["retrains"][0]["result"] == "failed"
    assert hook.starter.starts == []
    assert post(hook.route, notification(alert())).status == 200  # the redelivery starts it
    assert len(hook.starter.starts) == 1


def test_failed_start_leaves_no_cooldown(hook: Hook) -> None:
    """A dispatch that failed is not a retraining: the redelivery starts one."""
    hook.starter.failures.append(ForgeUnavailable("GitHub answered 502"))
    assert post(hook.route, notification(alert())).status == 503
    assert cooldown_tag("staging") not in hook.tags.tags["fraud-detector"]
    assert post(hook.route, notification(alert())).status == 200
    assert len(hook.starter.starts) == 1


def test_unrecorded_start_still_cools_down_in_memory(hook: Hook) -> None:
    """A registry write failing after the start leaves the cool-down to this process's memory."""
    post_fail = RegistryUnavailable("unreachable")
    original = hook.tags.set_registered_model_tag

    def failing_set(name: str, key: str, value: str) -> None:
        raise post_fail

    hook.tags.set_registered_model_tag = failing_set  # type: ignore[method-assign]
    assert answer(post(hook.route, notification(alert())))["retrains"][0]["result"] == "started"
    hook.tags.set_registered_model_tag = original  # type: ignore[method-assign]
    assert answer(post(hook.route, notification(alert())))["retrains"][0]["result"] == "cooldown"


def test_unknown_model_is_reported_not_retried(hook: Hook) -> None:
    """An alert about a model the registry lacks starts nothing and answers 200."""
    response = post(hook.route, notification(alert(model="churn")))
    assert response.status == 200
    assert answer(response)["retrains"][0]["result"] == "unknown-model"
    assert hook.starter.starts == []


@pytest.mark.slow
def test_cooldown_lives_in_the_mlflow_registry(
    mlflow_server: MlflowService, mlflow_tracking_uri: str
) -> None:
    """With MLflow, the start is a tag on the registered model that a restart reads back."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    MlflowClient(mlflow_tracking_uri).create_registered_model(name)
    starter, clock = RecordingStarter(), ManualClock(1_750_000_000.0)
    registry = MlflowRegistry(mlflow_tracking_uri)

    def retrainer() -> Retrainer:
        cooldown = RegistryCooldown(registry)
        return Retrainer(starter, cooldown, cooldown_seconds=HOUR, clock=clock)

    request = RetrainRequest(name, "staging", ("amount",))
    assert retrainer().request(request).result == "started"
    tags = MlflowClient(mlflow_tracking_uri).get_registered_model(name).tags
    assert tags[cooldown_tag("staging")] == "2025-06-15T15:06:40+00:00"
    clock.advance(60)
    assert retrainer().request(request).result == "cooldown"  # a new process: memory is empty
    assert len(starter.starts) == 1
    with pytest.raises(ModelNotFound):
        retrainer().request(RetrainRequest(f"{name}-gone", "staging"))


# -- starters ------------------------------------------------------------------------------------


@pytest.fixture
def github(git_remote: GitRemote) -> Iterator[GitHubApiServer]:
    with GitHubApiServer(token=GITHUB_TOKEN, repositories={REPO: git_remote.path}) as server:
        yield server


def test_dispatch_reaches_github_with_the_workflows_payload(github: GitHubApiServer) -> None:
    """One repository_dispatch `retrain` with model, environment and features."""
    forge = GitHubForge(
        api_url=github.api_url, token=GITHUB_TOKEN, repository=REPO, backoff_seconds=0
    )
    request = RetrainRequest("fraud-detector", "staging", ("amount", "hour"), SINCE)
    detail = ForgeRetrain(forge).start(request)
    payload = {"model": "fraud-detector", "environment": "staging", "features": ["amount", "hour"]}
    assert github.dispatches == [Dispatch(REPO, "retrain", {**payload, "since": SINCE})]
    assert "repository_dispatch retrain" in detail


def test_failed_dispatch_is_reported_not_retried(github: GitHubApiServer) -> None:
    """A 502 is ForgeUnavailable after one request: a retry could start the workflow twice."""
    forge = GitHubForge(
        api_url=github.api_url, token=GITHUB_TOKEN, repository=REPO, backoff_seconds=0
    )
    github.fail_next(502, path_regex=r"/repos/acme/gitops/dispatches")
    with pytest.raises(ForgeUnavailable, match="502"):
        forge.dispatch("retrain", {"model": "fraud-detector"})
    assert len(github.requests_to("POST", r"/repos/acme/gitops/dispatches")) == 1
    assert github.dispatches == []


def test_local_retrain_runs_the_command_template(tmp_path: Path) -> None:
    """Without a forge, the command runs with model, module, environment and features filled in."""
    marker = tmp_path / "argv.json"
    script = f"import json, sys; open({str(marker)!r}, 'w').write(json.dumps(sys.argv[1:]))"
    template = ["{python}", "-c", script, "{module}", "--model-name", "{model}"]
    starter = LocalRetrain(
        [*template, "{environment}", "{features}", "{since}"], log_dir=tmp_path / "logs"
    )
    detail = starter.start(RetrainRequest("fraud-detector", "local", ("amount", "hour"), SINCE))
    (process,) = starter.started
    assert process.wait(timeout=30) == 0
    assert json.loads(marker.read_text()) == [
        "models.fraud_detector.train", "--model-name", "fraud-detector", "local", "amount,hour",
        SINCE,
    ]  # fmt: skip
    assert f"pid {process.pid}" in detail
    assert len(list((tmp_path / "logs").glob("retrain-fraud-detector-local-*.log"))) == 1


def test_retrain_command_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    """A typo in the template fails when `sluice serve` starts, naming what it may use."""
    with pytest.raises(ConfigError, match=r"\{week\}.*\{environment\}"):
        LocalRetrain(["{python}", "-m", "{module}", "--week", "{week}"], log_dir=tmp_path)


def test_default_command_trains_the_models_module_on_recent_data() -> None:
    """The default is `python -m models.MODEL.train --model-name MODEL --since TIME`: the newest
    data since the drift alert started, not the module's default (week 0 of the example)."""
    request = RetrainRequest("fraud-detector", "x", ("amount",), SINCE)
    assert render_command(Settings().retrain_command, request) == [
        sys.executable, "-m", "models.fraud_detector.train", "--model-name", "fraud-detector",
        "--since", SINCE,
    ]  # fmt: skip


# -- composition ---------------------------------------------------------------------------------


def test_no_token_no_route() -> None:
    """Without alertmanager_token, POST /hooks/alertmanager is not served."""
    built = build_alertmanager_hook(
        Settings(), forge=NoForge(), registry=MemoryTags(), metrics=ServeMetrics()
    )
    assert built is None


def test_local_forge_retrains_with_the_training_module(tmp_path: Path) -> None:
    """`--forge local` composes the local command; a forge composes the dispatch."""
    settings = Settings(state_dir=tmp_path)
    assert isinstance(build_retrain_starter(settings, NoForge()), LocalRetrain)


def test_route_is_served_over_http_with_the_token(tmp_path: Path) -> None:
    """`sluice serve`'s server answers the route: 401 without the token, 200 with it."""
    settings = Settings(
        alertmanager_token=TOKEN,
        state_dir=tmp_path,
        retrain_command=["{python}", "-c", "pass"],
        retrain_group_seconds=0.2,
    )
    metrics = ServeMetrics()
    hook = build_alertmanager_hook(
        settings, forge=NoForge(), registry=MemoryTags("fraud-detector"), metrics=metrics
    )
    routes = sluice_routes(
        metrics=metrics,
        status=dict,
        mlflow_trigger=lambda model, alias: False,
        mlflow_webhook_secret=None,
        alertmanager_hook=hook,
    )
    session = requests.Session()
    session.trust_env = False
    with SluiceServer(routes) as server:
        url = f"{server.url}/hooks/alertmanager"
        assert session.post(url, data=notification(alert()), timeout=10).status_code == 401
        good = session.post(
            url,
            data=notification(alert()),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
    assert good.status_code == 200
    assert good.json()["retrains"][0]["result"] == "grouped"
    deadline = time.monotonic() + 30
    while not list((tmp_path / "retrain").glob("*.log")):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_webhook_rejected_reason_never_holds_the_token() -> None:
    """The 401 reasons are fixed phrases."""
    from controller.serve.alertmanager_hook import verify_bearer

    for header in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Token {TOKEN}"}):
        with pytest.raises(WebhookRejected) as raised:
            verify_bearer(header, TOKEN)
        assert TOKEN not in raised.value.reason
        assert TOKEN not in raised.value.message


# -- grouping, recent data, outcomes -------------------------------------------------------------


class RecordingNotifier:
    def __init__(self) -> None:
        self.notices: list[tuple[str, str, str]] = []

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        self.notices.append((title, text, severity))


class GroupedHook(Hook):
    """The route with a grouping window whose timers the test fires by hand."""

    def __init__(self, *, group: float = 30.0, cooldown: float = HOUR) -> None:
        super().__init__(cooldown=cooldown)
        self.notifier = RecordingNotifier()
        self.timers: list[tuple[float, Any]] = []
        self.observed: list[RetrainOutcome] = []
        self.retrainer = Retrainer(
            self.starter,
            RegistryCooldown(self.tags),
            cooldown_seconds=cooldown,
            group_seconds=group,
            notifier=self.notifier,
            observer=self.observed.append,
            challenger=lambda model: 7,
            clock=self.clock,
            schedule=lambda delay, action: self.timers.append((delay, action)),
        )
        self.route = alertmanager_hook_route(
            token=TOKEN, retrainer=self.retrainer, metrics=self.metrics
        )

    def fire_timers(self) -> None:
        timers, self.timers = self.timers, []
        for _, action in timers:
            action()

    def record(self, tag: str) -> RetrainRecord:
        found = RetrainRecord.decode(self.tags.tags["fraud-detector"].get(tag))
        assert found is not None
        return found


def test_prediction_and_feature_alerts_within_the_window_are_one_retraining() -> None:
    """The prediction alert (no features) first, the feature alert 12 s later: one retraining
    naming the features, started when the window closes; neither alert is turned away."""
    hook = GroupedHook()
    first = post(hook.route, notification(alert("SluicePredictionDrift", features=None)))
    assert [r["result"] for r in answer(first)["retrains"]] == ["grouped"]
    assert hook.starter.starts == []
    assert hook.record(last_retrain_tag("staging")).outcome == "grouping"
    hook.clock.advance(12)
    second = post(hook.route, notification(alert(features="amount,hour")))
    assert [r["result"] for r in answer(second)["retrains"]] == ["grouped"]
    assert [delay for delay, _ in hook.timers] == [30.0]
    hook.clock.advance(18)
    hook.fire_timers()
    (request,) = hook.starter.requests
    assert request.features == ("amount", "hour")
    assert request.alerts == ("SluicePredictionDrift", "SluiceFeatureDrift")
    assert request.since == SINCE
    assert [o.result for o in hook.observed] == ["started"]
    record = hook.record(last_retrain_tag("staging"))
    assert (record.outcome, record.features) == ("started", ("amount", "hour"))
    assert hook.count("sluice_retrains_total", **LABELS, result="cooldown") == 0
    # The cool-down applies to retrainings: the next alert, after the start, is turned away.
    hook.clock.advance(60)
    again = post(hook.route, notification(alert()))
    assert [r["result"] for r in answer(again)["retrains"]] == ["cooldown"]
    assert len(hook.starter.starts) == 1


def test_turned_away_alert_is_recorded_and_announced_once_per_cooldown() -> None:
    """A repeat inside the cool-down is a registry record and one warning, not a log line."""
    hook = GroupedHook(group=0)
    post(hook.route, notification(alert()))
    for _ in range(3):
        hook.clock.advance(120)
        post(hook.route, notification(alert("SluicePredictionDrift", features=None)))
    turned = hook.record(turned_away_tag("staging"))
    assert turned.outcome == "turned-away"
    assert turned.alerts == ("SluicePredictionDrift",)
    assert "next may start in 3240 s" in turned.detail
    warnings = [n for n in hook.notifier.notices if n[2] == "warning"]
    assert len(warnings) == 1
    assert "turned away" in warnings[0][0]
    assert "drifted: no feature named" in warnings[0][1]
    assert hook.record(last_retrain_tag("staging")).outcome == "started"  # not overwritten


def test_group_that_fails_to_start_is_recorded_and_leaves_no_cooldown() -> None:
    """No request is left to answer 503: the record, the notice and the metric say it."""
    hook = GroupedHook()
    hook.starter.failures.append(ForgeUnavailable("GitHub answered 502"))
    post(hook.route, notification(alert()))
    hook.clock.advance(30)
    hook.fire_timers()
    assert [(o.result, o.detail) for o in hook.observed] == [("failed", "GitHub answered 502")]
    record = hook.record(last_retrain_tag("staging"))
    assert (record.outcome, record.detail) == ("failed", "GitHub answered 502")
    assert hook.notifier.notices[-1][2] == "error"
    assert cooldown_tag("staging") not in hook.tags.tags["fraud-detector"]
    post(hook.route, notification(alert()))  # Alertmanager's repeat opens a new group
    hook.clock.advance(30)
    hook.fire_timers()
    assert len(hook.starter.starts) == 1


@pytest.mark.parametrize(
    ("code", "outcome", "version", "severity"),
    [
        (0, "succeeded", 7, "success"),
        (1, "gate-failed", None, "warning"),
        (2, "failed", None, "error"),
    ],
)
def test_finished_retraining_records_its_outcome(
    code: int, outcome: str, version: int | None, severity: str
) -> None:
    """The training's exit status becomes the record's outcome, with the new challenger."""
    hook = GroupedHook(group=0)
    post(hook.route, notification(alert()))
    (request,) = hook.starter.requests
    hook.clock.advance(300)
    hook.retrainer.finished(request, code, "log /tmp/x.log")
    record = hook.record(last_retrain_tag("staging"))
    assert (record.outcome, record.new_version) == (outcome, version)
    assert record.finished_at == "2025-06-15T15:11:40+00:00"
    assert record.features == ("amount", "hour")
    assert hook.notifier.notices[-1][2] == severity
    line = describe_retraining(record, None, hook.clock.now + 60)
    assert line.startswith(f"{outcome}{f' → v{version}' if version else ''} (6 min ago; ")
    assert "SluiceFeatureDrift: amount, hour; data since 2025-11-22T07:00:00+00:00" in line


def test_local_retrain_tells_the_command_what_drifted_and_reports_its_exit(
    tmp_path: Path,
) -> None:
    """The command's environment has the request; none of the names is a setting's variable
    (the training module loads the settings); the exit status reaches on_exit."""
    marker = tmp_path / "env.json"
    script = (  # no braces: the command is a template
        "import json, os; "
        f"open({str(marker)!r}, 'w').write(json.dumps(dict((k, v) for k, v in "
        "os.environ.items() if k.startswith('SLUICE_'))))"
    )
    exits: list[tuple[RetrainRequest, int]] = []
    starter = LocalRetrain(
        ["{python}", "-c", script + "; raise SystemExit(1)"],
        log_dir=tmp_path,
        on_exit=lambda request, code, log: exits.append((request, code)),
    )
    request = RetrainRequest("fraud-detector", "local", ("amount", "hour"), SINCE, "3", ("A",))
    starter.start(request)
    deadline = time.monotonic() + 30
    while not exits:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert exits == [(request, 1)]
    env = json.loads(marker.read_text())
    assert {name: env[name] for name in RETRAIN_ENVIRONMENT_VARIABLES} == {
        "SLUICE_RETRAIN_MODEL": "fraud-detector",
        "SLUICE_RETRAIN_ENVIRONMENT": "local",
        "SLUICE_RETRAIN_SINCE": SINCE,
        "SLUICE_DRIFTED_FEATURES": "amount,hour",
        "SLUICE_DRIFTED_VERSION": "3",
        "SLUICE_RETRAIN_REASON": "A",
    }
    settings_variables = {f"SLUICE_{name.upper()}" for name in Settings.model_fields}
    assert settings_variables.isdisjoint(RETRAIN_ENVIRONMENT_VARIABLES)


@pytest.mark.parametrize(
    ("starts_at", "since"),
    [
        ("2025-11-22T07:00:00.123456789Z", "2025-11-22T07:00:00+00:00"),
        ("2025-11-22T08:00:00+01:00", "2025-11-22T07:00:00+00:00"),
        ("0001-01-01T00:00:00Z", ""),
        ("yesterday", ""),
    ],
)
def test_the_alerts_start_is_the_retrainings_since(starts_at: str, since: str) -> None:
    """Alertmanager's startsAt (nanoseconds, any offset) in UTC; its zero time is unknown."""
    body = notification({**alert(), "startsAt": starts_at})
    (request,), _ = retrain_requests(parse_notification(body), {"SluiceFeatureDrift"})
    assert request.since == since


def test_training_since_a_time_trains_on_the_newest_week() -> None:
    """`--since` (the default retrain command's) is the example's newest week; no flag is
    week 0 as before, and --week and --since exclude each other."""
    from models.fraud_detector.data import NEWEST_WEEK
    from models.fraud_detector.train import _parse_args

    assert _parse_args(["--since", SINCE]).week == NEWEST_WEEK
    assert _parse_args([]).week == 0
    assert _parse_args(["--week", "newest"]).week == NEWEST_WEEK
    with pytest.raises(SystemExit):
        _parse_args(["--week", "1", "--since", SINCE])
    with pytest.raises(SystemExit):
        _parse_args(["--since", "last tuesday"])
