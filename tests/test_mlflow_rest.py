"""MlflowRegistry over MLflow's REST API: the MLflow client's environment variables still reach
the server, retries stop at their bound, and every failure is the one line it was with MLflow's
Python client.

Authentication is checked through a small authenticating reverse proxy in front of the
session's MLflow server (as a team puts nginx or an identity-aware proxy in front of
``mlflow server``): it forwards only requests with the expected ``Authorization`` header.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from support.registry import register_version

from controller.backends.mlflow_registry import MlflowRegistry, registry_errors
from controller.errors import (
    ConfigError,
    InputError,
    ModelNotFound,
    PermanentError,
    RegistryUnavailable,
)
from controller.local.processes import free_port
from controller.local.services import MlflowService

_CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_WORKSPACE",
)


@pytest.fixture(autouse=True)
def client_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials but the test's own (no ~/.mlflow/credentials either), one retry at most,
    without backoff."""
    for name in _CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


class _Handler(BaseHTTPRequestHandler):
    """Every method to :meth:`answer`, and no access log on stderr."""

    def answer(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def do_PATCH(self) -> None:
        self.answer()

    def do_DELETE(self) -> None:
        self.answer()

    def log_message(self, *args: object) -> None:
        pass


class _Server:
    """A ThreadingHTTPServer on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AuthProxy:
    """Forwards to ``upstream`` what carries ``expected`` as its Authorization header; answers
    anything else 401 in plain text, as MLflow's basic-auth app does. Records the headers."""

    def __init__(self, upstream: str) -> None:
        self.expected = ""
        self.seen: list[str] = []
        proxy = self

        class Handler(_Handler):
            def answer(self) -> None:
                authorization = self.headers.get("Authorization", "")
                proxy.seen.append(authorization)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if authorization != proxy.expected:
                    answer = (401, b"You are not authenticated.", "text/plain")
                else:
                    headers = {"Content-Type": self.headers.get("Content-Type", "")}
                    got = requests.request(
                        self.command, upstream + self.path, data=body, headers=headers, timeout=30
                    )
                    answer = (got.status_code, got.content, got.headers.get("Content-Type", ""))
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[2])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

        self.server = _Server(Handler)
        self.url = self.server.url


class CannedServer:
    """Answers every request with one status and body, counting the requests."""

    def __init__(self) -> None:
        self.status, self.body, self.requests = 500, b"", 0
        canned = self

        class Handler(_Handler):
            def answer(self) -> None:
                canned.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

        self.server = _Server(Handler)
        self.url = self.server.url

    def answer(self, status: int, document: dict[str, str]) -> None:
        self.status, self.body, self.requests = status, json.dumps(document).encode(), 0


@pytest.fixture(scope="module")
def registered(mlflow_server: MlflowService) -> str:
    """A model with a version (and an input example) aliased champion on the session's server."""
    name = f"rest-{uuid.uuid4().hex[:8]}"
    register_version(mlflow_server.tracking_uri, name, alias="champion", input_example=True)
    return name


@pytest.fixture(scope="module")
def proxy(mlflow_server: MlflowService) -> Iterator[AuthProxy]:
    auth = AuthProxy(mlflow_server.tracking_uri)
    yield auth
    auth.server.close()


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.server.close()


def _read_through(registry: MlflowRegistry, name: str) -> None:
    """A version by alias, its run, and its model files through the artifact proxy."""
    version = registry.resolve(name, alias="champion")
    assert version.run_id is not None
    assert registry.run_summary(version.run_id).metrics
    assert registry.input_rows(name, version.version, 3)


@pytest.mark.slow
def test_a_bearer_token_reaches_the_server_as_its_header(
    proxy: AuthProxy, registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_TOKEN goes out as ``Bearer``, on registry and artifact requests alike."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-8c1f4e2a")
    proxy.expected, proxy.seen = "Bearer tok-8c1f4e2a", []
    _read_through(MlflowRegistry(proxy.url), registered)
    assert len(proxy.seen) >= 6
    assert set(proxy.seen) == {"Bearer tok-8c1f4e2a"}


@pytest.mark.slow
def test_basic_auth_reaches_the_server_and_wins_over_a_token(
    proxy: AuthProxy, registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_USERNAME and _PASSWORD go out as basic auth, before a token (MLflow's
    order)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sluice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-51d0c9")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-unused")
    basic = base64.b64encode(b"sluice:pw-51d0c9").decode()
    proxy.expected, proxy.seen = f"Basic {basic}", []
    _read_through(MlflowRegistry(proxy.url), registered)
    assert set(proxy.seen) == {f"Basic {basic}"}


@pytest.mark.slow
def test_credentials_file_is_read_as_mlflow_reads_it(
    proxy: AuthProxy, registered: str, tmp_path: Path
) -> None:
    """Without the variables, ``~/.mlflow/credentials`` supplies basic auth."""
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = ci\nmlflow_tracking_password = pw-from-file\n"
    )
    proxy.expected = f"Basic {base64.b64encode(b'ci:pw-from-file').decode()}"
    _read_through(MlflowRegistry(proxy.url), registered)


@pytest.mark.slow
def test_a_refused_credential_is_one_line_without_the_secret(
    proxy: AuthProxy, registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 is permanent (exit 2, not retried), one line, and the token is not in it."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-wrong-77e2a9")
    proxy.expected, proxy.seen = "Bearer tok-right", []
    with pytest.raises(PermanentError) as refused:
        MlflowRegistry(proxy.url).registered_model_tags(registered)
    assert refused.value.message == (
        f"registry at {proxy.url} failed on model {registered!r}: API request to endpoint "
        "/api/2.0/mlflow/registered-models/get failed with error code 401 != 200. Response "
        "body: 'You are not authenticated.'"
    )
    assert len(proxy.seen) == 1
    assert "tok-wrong" not in refused.value.message


@pytest.mark.slow
def test_an_unknown_model_is_model_not_found_in_one_line(mlflow_server: MlflowService) -> None:
    """The server's error document, translated as before: the name, the server's words, the fix."""
    uri = mlflow_server.tracking_uri
    name = f"unknown-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ModelNotFound) as missing:
        MlflowRegistry(uri).registered_model_tags(name)
    assert missing.value.message == (
        f"model {name!r} not found in the registry at {uri}: RESOURCE_DOES_NOT_EXIST: "
        f"Registered Model with name={name} not found; check the name, version or alias"
    )
    assert MlflowRegistry(uri).version_by_alias(name, "champion") is None


def test_an_unreachable_server_is_one_line_within_the_retry_bound() -> None:
    """Nothing listening: RegistryUnavailable (exit 3) at once, in today's words."""
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as unreachable:
        MlflowRegistry(uri).resolve("fraud-detector", alias="champion")
    assert time.monotonic() - started < 5
    assert unreachable.value.message == (
        f"MLflow registry at {uri} is unreachable; start it or set MLFLOW_TRACKING_URI to a "
        "running tracking server"
    )


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (500, "failed on registered models (INTERNAL_ERROR); retry, or check the server's log"),
        (429, "failed on registered models (REQUEST_LIMIT_EXCEEDED); retry"),
        (502, "is unreachable; start it or set MLFLOW_TRACKING_URI"),
        (504, "is unreachable; start it or set MLFLOW_TRACKING_URI"),
    ],
)
def test_a_server_that_keeps_failing_is_told_from_one_that_never_answers(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch, status: int, says: str
) -> None:
    """Retries spent on a server's own 500s or 429s say it failed (look at its log); spent on a
    gateway's 502s or 504s, that the tracking server behind it is unreachable."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    canned.answer(status, {})
    with pytest.raises(RegistryUnavailable) as failed:
        MlflowRegistry(canned.url).all_aliases()
    assert says in failed.value.message


@pytest.mark.parametrize(("retries", "requests_sent"), [("0", 1), ("1", 2)])
def test_retries_stop_at_the_bound(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch, retries: str, requests_sent: int
) -> None:
    """A 503 is retried MLFLOW_HTTP_REQUEST_MAX_RETRIES times, then the registry is
    unavailable, in the server's own words (it answered: its log says why, it is not
    unreachable); a 4xx is answered at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
    canned.answer(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"})
    with pytest.raises(RegistryUnavailable) as busy:
        MlflowRegistry(canned.url).all_aliases()
    assert busy.value.message == (
        f"registry at {canned.url} failed on registered models (TEMPORARILY_UNAVAILABLE); "
        "retry, or check the server's log"
    )
    assert canned.requests == requests_sent
    canned.answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad filter"})
    with pytest.raises(InputError):
        MlflowRegistry(canned.url).all_aliases()
    assert canned.requests == 1


@pytest.mark.parametrize(
    ("status", "code", "error", "message"),
    [
        (404, "RESOURCE_DOES_NOT_EXIST", ModelNotFound, "model 'm' not found in the registry at"),
        (400, "RESOURCE_ALREADY_EXISTS", InputError, "refused model 'm': RESOURCE_ALREADY_EXISTS"),
        (403, "PERMISSION_DENIED", PermanentError, "refused model 'm' (PERMISSION_DENIED)"),
        (400, "NO_SUCH_CODE", RegistryUnavailable, "failed on model 'm' (INTERNAL_ERROR)"),
    ],
)
def test_error_documents_map_as_mlflows_client_mapped_them(
    canned: CannedServer, status: int, code: str, error: type[Exception], message: str
) -> None:
    """``{"error_code", "message"}`` by code (a code MLflow does not know is INTERNAL_ERROR,
    as MLflow's client reads it), each one line."""
    canned.answer(status, {"error_code": code, "message": "words\nof the server"})
    with pytest.raises(error) as raised:
        MlflowRegistry(canned.url).registered_model_tags("m")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_insecure_tls_and_a_ca_bundle_together_are_refused(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_INSECURE_TLS with MLFLOW_TRACKING_SERVER_CERT_PATH is refused as MLflow
    refuses it, before any request."""
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ssl/certs/ca.pem")
    with pytest.raises(PermanentError, match="only one of these environment variables may be set"):
        MlflowRegistry(canned.url).all_aliases()
    assert canned.requests == 0


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "databricks", "postgresql://u:pw9@db/m"]
)
def test_a_tracking_uri_that_is_no_server_is_refused(uri: str) -> None:
    """Sluice talks to a tracking server over HTTP(S): any other URI is a ConfigError that
    names it (without its password)."""
    with pytest.raises(ConfigError, match="talks to an MLflow tracking server over HTTP") as bad:
        MlflowRegistry(uri)
    assert "pw9" not in bad.value.message
    assert uri.split("://")[0] in bad.value.message


def test_mlflows_own_exceptions_are_still_translated() -> None:
    """Code that calls MLflow's library (training) keeps its one-line errors."""
    from mlflow.exceptions import MlflowException, RestException

    where = "http://127.0.0.1:5000"
    missing = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model x"}
    with pytest.raises(ModelNotFound, match="no model x"), registry_errors(where, "model 'x'"):
        raise RestException(missing)
    with pytest.raises(RegistryUnavailable, match="unreachable"), registry_errors(where, "x"):
        raise MlflowException(f"API request to {where}/api failed with exception boom")


def test_a_transport_failure_in_mlflows_library_says_what_failed_and_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trainer's request that the server refused says so and names the call: a demo once
    failed with "unreachable" while its tracking server was up and logging, and nothing said
    which request had failed or how."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable) as unreachable, registry_errors(uri, "model 'x'"):
        MlflowClient(uri).get_experiment_by_name("x")
    assert unreachable.value.message == (
        f"MLflow registry at {uri} is unreachable (Connection refused on "
        "/api/2.0/mlflow/experiments/get-by-name); start it or set MLFLOW_TRACKING_URI to a "
        "running tracking server"
    )
