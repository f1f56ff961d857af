"""The cluster target against recorded KServe and Argo CD documents, served on 127.0.0.1.

``fixtures/cluster`` holds one environment (Application ``sluice-staging`` in ``argocd``,
InferenceService ``fraud-detector`` in ``models-staging``) at four moments:

- ``isvc-canary-loading`` + ``application-outofsync-progressing``: v4 (revision 00002) applied
  at 10 % and still loading, captured mid-sync (operation Running, the Application not yet
  re-compared), so OutOfSync against commit A while history ends at the first deploy;
- ``isvc-canary-10`` + ``application-synced-healthy``: 00002 ready at 10 % (``latest``), 00001
  at 90 % (``prev``), both tag routes with Knative URLs; Synced at A, Healthy;
- ``isvc-promoted``: 00002 at 100 %, rolled out, 00001 previous;
- ``isvc-canary-failed`` + ``application-synced-degraded``: v5 (00003) failed to load
  (``RevisionFailed``, ``BlockedByFailedLoad``), traffic still on 00002; the Application in
  Argo CD 3's ``appTree`` shape with no per-resource health, so the target runs the check.

``isvc-raw-canary-*`` are the same InferenceService in KServe's RawDeployment mode (0.20's
``spec.canary[]``, kserve#5672) canarying v5 (a Deployment and Service
``fraud-detector-v5-predictor``) beside the primary v4 (``fraud-detector-predictor``):
``loading`` (canary not ready, so routed nothing, kserve#5984), ``10`` and ``50`` (ready, its
``canaryStatuses`` entry reporting the weight it gets), ``promoted`` (``spec.predictor.name:
v5``, the canary's Deployment now the primary, no ``spec.canary``), ``failed`` (the canary's
model cannot load), ``rolled-back`` (``trafficPercent: 0``) and ``restored`` (v4 alone again).
KServe leaves ``status.components.predictor`` empty in this mode; the statuses were made by
:mod:`controller.local.raw_status` with its local additions removed. Assumed where KServe's
documentation is silent: ``status.url`` and ``address`` forms, and the condition names of
the canary (the local emulation's).

The statuses were produced by :mod:`controller.local.kserve_status` with cluster URL forms and
frozen. The tests check every document against the InferenceService and Application CRD
schemas (made strict) and the recorded resource health against Argo CD's own check, so the
shapes the target is tested on are the shapes a cluster returns. A real
``kubernetes.client.ApiClient`` and ``requests`` talk to a local HTTP server playing the
Kubernetes API path of InferenceServices and Argo CD's ``/api/v1/applications/NAME``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client
from support.crd import status_errors, strict
from upstream.sources import UPSTREAM

from controller.backends.argocd_health import inferenceservice_health
from controller.backends.kubernetes_target import KubernetesTarget
from controller.errors import ConfigError, RemoteUnavailable, SluiceError
from controller.manifests.manifest import PinnedRelease
from controller.ports import SyncTrigger
from controller.rollout.actions import (
    Analyze,
    Finish,
    Outcome,
    RestorePrevious,
    SetChampion,
    StartRollback,
    Wait,
)
from controller.rollout.decide import RESTORE_ACTION, decide
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy
from controller.schemas import inferenceservice_schema
from controller.target_types import TargetObservation, TrafficEntry

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cluster"
APPLICATION_CRD = UPSTREAM / "argo-cd/manifests/crds/application-crd.yaml"

KUBE_TOKEN = "kube-sa-token-0123456789abcdef"
ARGOCD_TOKEN = "argocd-api-token-9f8e7d6c5b4a3210"
NS, APP, ISVC = "models-staging", "sluice-staging", "fraud-detector"
R1, R2, R3 = (f"fraud-detector-predictor-0000{i}" for i in (1, 2, 3))
SHA_0 = "a09d4c7e2b5f8136d0e9c2a4b6f8d1e3a5c7b902"
SHA_A = "3f7c2a91d0b84e6f5a2c9e1b7d4f60a8c3e5b219"
SHA_C = "c41f9e27b8d3a6051f2e4c7b9d0a3e6f8b1c5d70"
TAG_URL = "http://{tag}-fraud-detector-predictor.models-staging.example.com"

ISVC_PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices/([^/]+)$"
)
APP_PATH = re.compile(r"^/api/v1/applications/([^/]+)$")
GRAPHS_PATH = re.compile(r"^/apis/serving\.kserve\.io/v1alpha1/namespaces/([^/]+)/inferencegraphs$")


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def fixture_names(prefix: str) -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob(f"{prefix}-*.json"))


# -- the server -----------------------------------------------------------------------------------


class ClusterApi(ThreadingHTTPServer):
    """Answers the two GETs the target makes from dicts the test fills in."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reset()

    def reset(self) -> None:
        self.isvcs: dict[tuple[str, str], dict[str, Any]] = {}
        self.graphs: dict[tuple[str, str], dict[str, Any]] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.kserve_installed = True
        #: Answer the list of InferenceGraphs 403, as a missing RBAC rule does.
        self.graphs_forbidden = False
        self.argocd_failure: int | None = None
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(self, isvc: str, application: str | dict[str, Any]) -> None:
        """Serve recorded InferenceService ``isvc`` and Application ``application``."""
        self.isvcs[(NS, ISVC)] = load(isvc)
        self.applications[APP] = load(application) if isinstance(application, str) else application


class _Handler(BaseHTTPRequestHandler):
    server: ClusterApi

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        authorization = self.headers.get("Authorization")
        path = self.path.partition("?")[0]
        if match := ISVC_PATH.match(path):
            self._kubernetes(authorization, match.group(1), match.group(2))
        elif match := GRAPHS_PATH.match(path):
            self._graphs(authorization, match.group(1))
        elif match := APP_PATH.match(path):
            self._argocd(authorization, match.group(1))
        else:
            self._reply(404, "404 page not found", content_type="text/plain")

    def _kubernetes(self, authorization: str | None, namespace: str, name: str) -> None:
        if authorization != f"Bearer {KUBE_TOKEN}":
            self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
        elif not self.server.kserve_installed:
            self._reply(404, "404 page not found", content_type="text/plain")
        elif (document := self.server.isvcs.get((namespace, name))) is None:
            message = f'inferenceservices.serving.kserve.io "{name}" not found'
            details = {"name": name, "group": "serving.kserve.io", "kind": "inferenceservices"}
            self._reply(404, _status(404, "NotFound", message, details))
        else:
            self._reply(200, document)

    def _graphs(self, authorization: str | None, namespace: str) -> None:
        if authorization != f"Bearer {KUBE_TOKEN}":
            self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
        elif not self.server.kserve_installed:
            self._reply(404, "404 page not found", content_type="text/plain")
        elif self.server.graphs_forbidden:
            message = "inferencegraphs.serving.kserve.io is forbidden"
            self._reply(403, _status(403, "Forbidden", message))
        else:
            items = [g for (ns, _), g in sorted(self.server.graphs.items()) if ns == namespace]
            kind = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraphList"}
            self._reply(200, kind | {"metadata": {"resourceVersion": "7"}, "items": items})

    def _argocd(self, authorization: str | None, name: str) -> None:
        if authorization != f"Bearer {ARGOCD_TOKEN}":
            message = "invalid session: token signature is invalid"
            self._reply(401, {"error": message, "code": 16, "message": message})
        elif self.server.argocd_failure is not None:
            self._reply(self.server.argocd_failure, {"error": "boom", "code": 13})
        elif (document := self.server.applications.get(name)) is None:
            # Argo CD does not reveal whether an Application exists: 403, not 404.
            self._reply(403, {"error": "permission denied", "code": 7})
        else:
            self._reply(200, document)

    def _reply(self, code: int, body: Any, content_type: str = "application/json") -> None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on what the target returns."""


def _status(code: int, reason: str, message: str, details: Any = None) -> dict[str, Any]:
    """A Kubernetes ``Status`` error body."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    status |= {"message": message, "reason": reason, "code": code}
    return status | ({"details": details} if details else {})


@pytest.fixture(scope="module")
def cluster_server() -> Iterator[ClusterApi]:
    server = ClusterApi()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cluster(cluster_server: ClusterApi) -> ClusterApi:
    cluster_server.reset()
    return cluster_server


def kube_client(host: str, token: str = KUBE_TOKEN) -> client.ApiClient:
    configuration = client.Configuration(host=host)
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


@pytest.fixture
def target(cluster: ClusterApi) -> Iterator[KubernetesTarget]:
    api_client = kube_client(cluster.url)
    built = KubernetesTarget(
        cluster.url, ARGOCD_TOKEN, namespace="models-{environment}", api_client=api_client
    )
    yield built
    built.close()
    api_client.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_without_secrets(error: SluiceError, *secrets: str) -> None:
    assert "\n" not in str(error)
    for secret in secrets:
        assert secret not in str(error)


# -- the recorded documents are honest ------------------------------------------------------------


@pytest.fixture(scope="module")
def application_validator() -> jsonschema.Draft7Validator:
    crd = yaml.load(APPLICATION_CRD.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


ISVC_VALIDATOR = jsonschema.Draft7Validator(strict(inferenceservice_schema()))


@pytest.mark.parametrize("name", fixture_names("application"))
def test_application_fixture_matches_crd(
    name: str, application_validator: jsonschema.Draft7Validator
) -> None:
    """Each recorded Application has only fields of Argo CD's Application CRD, of their types."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in application_validator.iter_errors(load(name))
    ]
    assert errors == []


@pytest.mark.parametrize("name", fixture_names("isvc"))
def test_inferenceservice_fixture_matches_crd(name: str) -> None:
    """Each recorded InferenceService has only fields of KServe's CRD, its status strictly so."""
    document = load(name)
    errors = [e.message for e in ISVC_VALIDATOR.iter_errors(document)]
    assert errors + status_errors(document["status"]) == []


def test_strict_schemas_refuse_misspelt_fields(
    application_validator: jsonschema.Draft7Validator,
) -> None:
    """A misspelt field fails both checks, so the two tests above can fail."""
    application = load("application-synced-healthy")
    application["status"]["sync"]["revison"] = SHA_A
    isvc = load("isvc-canary-10")
    isvc["status"]["components"]["predictor"]["traffic"][0]["revisonName"] = R2
    assert list(application_validator.iter_errors(application))
    assert status_errors(isvc["status"])


@pytest.mark.parametrize(
    ("application", "isvc"),
    [
        ("application-synced-healthy", "isvc-canary-10"),
        ("application-outofsync-progressing", "isvc-canary-loading"),
    ],
)
def test_recorded_resource_health_is_argo_cds(application: str, isvc: str) -> None:
    """The health an Application records for the InferenceService is what Argo CD's check says."""
    (resource,) = load(application)["status"]["resources"]
    check = inferenceservice_health(load(isvc))
    assert resource["health"] == {"status": check.status, "message": check.message}


def test_degraded_application_records_no_resource_health() -> None:
    """The degraded Application is Argo CD 3's appTree shape: app health only, none per resource."""
    status = load("application-synced-degraded")["status"]
    assert status["resourceHealthSource"] == "appTree"
    assert "health" not in status["resources"][0]
    assert status["health"]["status"] == inferenceservice_health(load("isvc-canary-failed")).status


# -- observations ---------------------------------------------------------------------------------


def test_canary_at_ten_percent(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A 10 % canary reads as two tagged traffic entries, with sync and health from Argo CD."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    observed = target.observe("staging", ISVC)
    assert observed.exists
    assert (observed.synced_revision, observed.sync_status) == (SHA_A, "Synced")
    assert (observed.health, observed.health_message) == ("Healthy", "InferenceService is healthy.")
    assert observed.traffic == (
        TrafficEntry(R2, 10, True, "latest", TAG_URL.format(tag="latest")),
        TrafficEntry(R1, 90, False, "prev", TAG_URL.format(tag="prev")),
    )
    assert (observed.latest_created, observed.latest_ready) == (R2, R2)
    assert (observed.latest_rolledout, observed.previous_rolledout) == (R1, None)
    assert observed.namespace == NS
    assert observed.configuration == "fraud-detector-predictor"
    assert observed.url == "http://fraud-detector.models-staging.example.com"
    assert observed.failure is None
    assert observed.annotations["sluice.dev/model-version"] == "4"
    assert observed.annotations["sluice.dev/previous-version"] == "3"


def test_promoted(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """After promotion the new revision takes all traffic and the old one is the previous."""
    cluster.serve("isvc-promoted", "application-synced-healthy")
    observed = target.observe("staging", ISVC)
    assert observed.traffic == (
        TrafficEntry(R2, 100, True, "latest", TAG_URL.format(tag="latest")),
    )
    assert (observed.latest_rolledout, observed.previous_rolledout) == (R2, R1)
    assert observed.tagged("prev") is None


def test_failed_canary(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A canary revision that failed is reported with KServe's message and gets no traffic."""
    cluster.serve("isvc-canary-failed", "application-synced-degraded")
    observed = target.observe("staging", ISVC)
    assert observed.failure is not None
    assert observed.failure.startswith(f'Revision "{R3}" failed with message: Container failed')
    assert (observed.latest_created, observed.latest_ready) == (R3, R2)
    assert (observed.percent_of(R3), observed.percent_of(R2)) == (0, 100)
    assert (observed.synced_revision, observed.sync_status) == (SHA_C, "Synced")


def test_health_falls_back_to_argo_cds_check(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """Without per-resource health in the Application, Argo CD's Lua check decides: Degraded."""
    cluster.serve("isvc-canary-failed", "application-synced-degraded")
    observed = target.observe("staging", ISVC)
    assert observed.health == "Degraded"
    assert observed.health_message.startswith("0: transitionStatus | BlockedByFailedLoad")


def test_application_health_wins_over_the_check(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """The health Argo CD reports for the resource is shown as is, not recomputed."""
    application = load("application-synced-healthy")
    application["status"]["resources"][0]["health"] = {"status": "Suspended", "message": "paused"}
    cluster.serve("isvc-canary-10", application)
    observed = target.observe("staging", ISVC)
    assert (observed.health, observed.health_message) == ("Suspended", "paused")


def test_out_of_sync_reports_last_synced_commit(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """OutOfSync names the last synced commit from history, not the tip Argo CD compared to."""
    cluster.serve("isvc-canary-loading", "application-outofsync-progressing")
    observed = target.observe("staging", ISVC)
    assert (observed.sync_status, observed.synced_revision) == ("OutOfSync", SHA_0)
    assert observed.health == "Progressing"
    assert "InProgress" in observed.health_message
    assert observed.failure is None


def test_names_come_from_templates(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """The environment picks the namespace and the Application through the templates."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    target.observe("staging", ISVC)
    assert cluster.paths == [
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{ISVC}",
        f"/api/v1/applications/{APP}",
    ]


def test_a_sync_request_asks_argo_cd_to_refresh_the_application(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """After each commit the rollout asks Argo CD to refresh (``argocd app get --refresh``),
    so the automated sync applies it now rather than at Argo CD's next poll of Git; a refused
    request is the one-line error the reconciler logs before going on."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    assert isinstance(target, SyncTrigger)
    target.request_sync("staging")
    assert cluster.paths == [f"/api/v1/applications/{APP}?refresh=normal"]
    cluster.argocd_failure = 500
    with pytest.raises(SluiceError) as failed:
        target.request_sync("staging")
    assert ARGOCD_TOKEN not in failed.value.message


def test_application_for_may_be_a_function(cluster: ClusterApi) -> None:
    """A callable names the Application of an environment."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    cluster.applications = {"staging-models": load("application-synced-healthy")}
    with kube_client(cluster.url) as api_client:
        observed = KubernetesTarget(
            cluster.url,
            ARGOCD_TOKEN,
            application_for=lambda env: f"{env}-models",
            namespace=lambda env: NS,
            api_client=api_client,
        ).observe("staging", ISVC)
    assert observed.synced_revision == SHA_A


def test_missing_inference_service(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A 404 for the InferenceService is exists=False, and Argo CD is not asked."""
    observed = target.observe("staging", ISVC)
    assert not observed.exists
    assert observed.traffic == ()
    assert [p for p in cluster.paths if p.startswith("/api/v1/")] == []


def test_kserve_not_installed(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A 404 for the API itself is a missing KServe, not a missing InferenceService."""
    cluster.kserve_installed = False
    with pytest.raises(ConfigError, match="install KServe") as caught:
        target.observe("staging", ISVC)
    assert_one_line_without_secrets(caught.value, KUBE_TOKEN)


def graph(name: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": ISVC}]}}},
    }


def test_the_environments_inference_graphs_are_listed_from_its_namespace(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """``sluice status``'s graphs: those of the environment's namespace only."""
    cluster.graphs[(NS, "b")] = graph("b")
    cluster.graphs[(NS, "a")] = graph("a")
    cluster.graphs[("models-production", "c")] = graph("c", "models-production")
    assert [g["metadata"]["name"] for g in target.inference_graphs("staging")] == ["a", "b"]
    assert target.inference_graphs("dev") == []


def test_no_inference_graph_api_is_no_graphs_and_a_missing_grant_says_which(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    cluster.kserve_installed = False
    assert target.inference_graphs("staging") == []
    cluster.kserve_installed = True
    cluster.graphs_forbidden = True
    with pytest.raises(ConfigError) as caught:
        target.inference_graphs("staging")
    assert str(caught.value).endswith(
        "grant Sluice's identity list on inferencegraphs.serving.kserve.io"
    )
    assert "forbids listing InferenceGraphs in models-staging (403)" in str(caught.value)
    assert_one_line_without_secrets(caught.value, KUBE_TOKEN)


# -- errors ---------------------------------------------------------------------------------------


def test_argocd_rejects_token(cluster: ClusterApi, caplog: pytest.LogCaptureFixture) -> None:
    """A 401 from Argo CD is one line naming the URL and the fix, never the token."""
    caplog.set_level(logging.DEBUG)
    wrong = "argocd-wrong-token-0000111122223333"
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    with kube_client(cluster.url) as api_client:
        rejected = KubernetesTarget(cluster.url, wrong, namespace=NS, api_client=api_client)
        with pytest.raises(ConfigError) as caught:
            rejected.observe("staging", ISVC)
    message = str(caught.value)
    assert f"{cluster.url}/api/v1/applications/{APP}" in message
    assert "(401)" in message
    assert "set ARGOCD_AUTH_TOKEN" in message
    assert_one_line_without_secrets(caught.value, wrong, ARGOCD_TOKEN, KUBE_TOKEN)
    assert wrong not in caplog.text


def test_argocd_unknown_application(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """Argo CD's 403 for an unknown Application names it and what to check."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    cluster.applications.clear()
    with pytest.raises(ConfigError, match=f"'{APP}' does not exist") as caught:
        target.observe("staging", ISVC)
    assert_one_line_without_secrets(caught.value, ARGOCD_TOKEN)


def test_argocd_server_error(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A 5xx from Argo CD is transient."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    cluster.argocd_failure = 503
    with pytest.raises(RemoteUnavailable, match="answered 503") as caught:
        target.observe("staging", ISVC)
    assert_one_line_without_secrets(caught.value, ARGOCD_TOKEN)


def test_argocd_unreachable(cluster: ClusterApi) -> None:
    """An unreachable Argo CD is one transient line naming the URL, its credentials masked."""
    cluster.serve("isvc-canary-10", "application-synced-healthy")
    url = f"http://admin:hunter2hunter2@127.0.0.1:{closed_port()}"
    with kube_client(cluster.url) as api_client:
        offline = KubernetesTarget(url, ARGOCD_TOKEN, namespace=NS, api_client=api_client)
        with pytest.raises(RemoteUnavailable, match="unreachable") as caught:
            offline.observe("staging", ISVC)
    assert "http://***@127.0.0.1:" in str(caught.value)
    assert_one_line_without_secrets(caught.value, "hunter2hunter2", ARGOCD_TOKEN)


def test_kubernetes_rejects_credentials(cluster: ClusterApi) -> None:
    """A 401 from the Kubernetes API is one line naming it, never the token."""
    wrong = "kube-wrong-token-4444555566667777"
    with kube_client(cluster.url, wrong) as api_client:
        rejected = KubernetesTarget(cluster.url, ARGOCD_TOKEN, api_client=api_client)
        with pytest.raises(
            ConfigError, match=r"Kubernetes API at http://127\.0\.0\.1:\d+ rejected"
        ) as caught:
            rejected.observe("staging", ISVC)
    assert_one_line_without_secrets(caught.value, wrong, KUBE_TOKEN)


def test_kubernetes_unreachable() -> None:
    """An unreachable Kubernetes API is one transient line naming it."""
    with kube_client(f"http://127.0.0.1:{closed_port()}") as api_client:
        offline = KubernetesTarget("http://127.0.0.1:1", ARGOCD_TOKEN, api_client=api_client)
        with pytest.raises(
            RemoteUnavailable, match=r"Kubernetes API at .* is unreachable"
        ) as caught:
            offline.observe("staging", ISVC)
    assert_one_line_without_secrets(caught.value, KUBE_TOKEN)


# -- building the Kubernetes client ---------------------------------------------------------------


def test_kubeconfig_is_the_fallback(
    cluster: ClusterApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a pod and without an api_client, the target reads the cluster named by KUBECONFIG."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cluster.url}}],
        "users": [{"name": "sluice", "user": {"token": KUBE_TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "sluice"}}],
        "current-context": "test",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cluster.serve("isvc-promoted", "application-synced-healthy")
    built = KubernetesTarget(cluster.url, ARGOCD_TOKEN, namespace=NS)
    try:
        assert built.observe("staging", ISVC).latest_rolledout == R2
    finally:
        built.close()


def test_no_kubernetes_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither a service account nor a kubeconfig, the error says how to provide one."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no Kubernetes credentials") as caught:
        KubernetesTarget("http://127.0.0.1:1", ARGOCD_TOKEN).observe("staging", ISVC)
    assert "KUBECONFIG" in str(caught.value)
    assert_one_line_without_secrets(caught.value, ARGOCD_TOKEN)


def test_template_with_unknown_field_fails_at_start() -> None:
    """A template naming anything but {environment} is refused when the target is made."""
    with pytest.raises(ConfigError, match="'env'"):
        KubernetesTarget("http://127.0.0.1:1", ARGOCD_TOKEN, application_for="sluice-{env}")


def test_repr_hides_the_token() -> None:
    """The target's repr names Argo CD without the token."""
    shown = repr(KubernetesTarget("http://127.0.0.1:1", ARGOCD_TOKEN))
    assert ARGOCD_TOKEN not in shown
    assert "127.0.0.1:1" in shown


# -- RawDeployment: spec.canary[] walked through the cluster target -------------------------------

PRIMARY, CANARY = "fraud-detector-predictor", "fraud-detector-v5-predictor"
SERVICE_URL = "http://{}.models-staging.svc.cluster.local"
POLICY = RolloutPolicy.model_validate({"steps": [10, 50, 100], "interval": 30})
RAW_URI = "s3://sluice-models/mlflow-artifacts/1/{}/artifacts/model"
V4_URI, V5_URI = (
    RAW_URI.format(run)
    for run in ("e4d3c2b1a0f94e8d7c6b5a4f3e2d1c0b", "9a8b7c6d5e4f30211f0e9d8c7b6a5948")
)


def synced_at(head: str, application: str = "application-synced-healthy") -> dict[str, Any]:
    """The recorded Application, synced at ``head``."""
    document = load(application)
    document["status"]["sync"] |= {"status": "Synced", "revision": head}
    return document


def observe_raw(
    cluster: ClusterApi, target: KubernetesTarget, isvc: str, head: str, **application: str
) -> TargetObservation:
    cluster.serve(f"isvc-raw-canary-{isvc}", synced_at(head, **application))
    return target.observe("staging", ISVC)


def released(
    observed: TargetObservation,
    head: str,
    *,
    version: int = 5,
    canary: int | None = 10,
    changed_at: float = 1000.0,
    **fields: Any,
) -> ReleaseObservation:
    """What the rollout sees of fraud-detector in staging: the pin at ``head`` (v5 at
    ``canary`` percent beside v4, in RawDeployment mode) and the cluster's observation."""
    uri, previous = (V5_URI, 4) if version == 5 else (V4_URI, None)
    pin = PinnedRelease(
        "fraud-detector", version, uri, "run", previous, canary,
        primary_storage_uri=V4_URI if canary is not None else uri, mode="RawDeployment",
    )  # fmt: skip
    return ReleaseObservation(
        model="fraud-detector", environment="staging", inference_service=ISVC, pin=pin,
        head=head, pin_commit=head, pin_changed_at=changed_at, target=observed, **fields,
    )  # fmt: skip


def test_raw_canary_step_by_step(cluster: ClusterApi, target: KubernetesTarget) -> None:
    """A RawDeployment canary read from spec.canary and canaryStatuses walks as a Serverless
    one: held while it loads, analysed at 10 % and 50 % against the primary through each
    Deployment's Service, and, promoted, the champion."""
    loading = observe_raw(cluster, target, "loading", SHA_A)
    assert (loading.latest_created, loading.latest_ready) == (CANARY, PRIMARY)
    assert (loading.latest_rolledout, loading.configuration) == (PRIMARY, f"{ISVC}-predictor")
    assert loading.traffic == (
        TrafficEntry(PRIMARY, 100, False, "prev", SERVICE_URL.format(PRIMARY)),
    )
    assert (loading.health, loading.failure) == ("Healthy", None)
    held = decide(released(loading, SHA_A), POLICY, 1031.0)
    assert isinstance(held, Wait)
    assert held.reason == f"canary revision {CANARY} is not serving 10% yet"

    at_10 = observe_raw(cluster, target, "10", SHA_A)
    assert (at_10.latest_created, at_10.latest_ready, at_10.latest_rolledout) == (
        CANARY, CANARY, PRIMARY,
    )  # fmt: skip
    assert at_10.traffic == (
        TrafficEntry(CANARY, 10, True, "latest", SERVICE_URL.format(CANARY)),
        TrafficEntry(PRIMARY, 90, False, "prev", SERVICE_URL.format(PRIMARY)),
    )
    analyse = decide(released(at_10, SHA_A), POLICY, 1031.0)
    assert isinstance(analyse, Analyze)
    assert (analyse.step, analyse.look) == (10, 1)

    at_50 = observe_raw(cluster, target, "50", SHA_C)
    assert (at_50.percent_of(CANARY), at_50.percent_of(PRIMARY)) == (50, 50)
    analyse = decide(released(at_50, SHA_C, canary=50, changed_at=1100.0), POLICY, 1131.0)
    assert isinstance(analyse, Analyze)
    assert (analyse.step, analyse.look) == (50, 1)

    promoted = observe_raw(cluster, target, "promoted", SHA_0)
    # Promotion names the primary v5: KServe keeps the canary's Deployment as the primary.
    assert (promoted.latest_created, promoted.latest_ready, promoted.latest_rolledout) == (
        CANARY, CANARY, CANARY,
    )  # fmt: skip
    assert promoted.traffic == (TrafficEntry(CANARY, 100, True),)
    assert promoted.tagged("prev") is None
    done = decide(released(promoted, SHA_0, canary=None, champion=4), POLICY, 1200.0)
    assert done == SetChampion(5, 4)


def test_raw_canary_that_cannot_load_is_rolled_back(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """The canary's failed load (its canaryStatuses model status) is the failure the rollout
    rolls back on, while the primary keeps every request."""
    failed = observe_raw(
        cluster, target, "failed", SHA_C, application="application-synced-degraded"
    )
    assert failed.failure is not None
    assert "not loadable" in failed.failure
    assert (failed.latest_created, failed.latest_ready) == (CANARY, PRIMARY)
    assert (failed.percent_of(CANARY), failed.percent_of(PRIMARY)) == (0, 100)
    assert failed.health == "Degraded"
    action = decide(released(failed, SHA_C), POLICY, 1031.0)
    assert isinstance(action, StartRollback)
    assert action.reason.startswith(f"canary revision {CANARY} failed: Container failed")


def test_raw_rollback_moves_traffic_then_restores(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """trafficPercent 0 leaves the canary's Deployment at 0 %: the restore follows; once
    spec.canary is gone the primary serves alone and the rollback is finished."""
    rolled_back = observe_raw(cluster, target, "rolled-back", SHA_C)
    assert rolled_back.traffic == (
        TrafficEntry(CANARY, 0, True, "latest", SERVICE_URL.format(CANARY)),
        TrafficEntry(PRIMARY, 100, False, "prev", SERVICE_URL.format(PRIMARY)),
    )
    reason = "prometheus/request-success-rate: 91.2% below 99%"
    obs = released(rolled_back, SHA_C, canary=0, rollback_reason=reason, quarantined=reason)
    action = decide(obs, POLICY, 1040.0)
    assert isinstance(action, RestorePrevious)
    restored = observe_raw(cluster, target, "restored", SHA_0)
    assert (restored.latest_created, restored.latest_ready) == (PRIMARY, PRIMARY)
    assert restored.traffic == (TrafficEntry(PRIMARY, 100, True),)
    finished = decide(
        released(restored, SHA_0, version=4, canary=None, champion=4, pin_action=RESTORE_ACTION),
        POLICY,
        1100.0,
    )
    assert finished == Finish(Outcome.ROLLED_BACK, "rolled back to v4")


def test_raw_mode_is_read_from_the_manifest_when_kserve_does_not_report_it(
    cluster: ClusterApi, target: KubernetesTarget
) -> None:
    """Without status.deploymentMode (an older KServe), the annotation or spec.canary decides;
    a Knative-shaped revision number KServe may write there is not taken for a revision."""
    document = load("isvc-raw-canary-10")
    del document["status"]["deploymentMode"]
    document["status"]["components"]["predictor"] = {"latestCreatedRevision": "2"}
    cluster.isvcs[(NS, ISVC)] = document
    cluster.applications[APP] = synced_at(SHA_A)
    observed = target.observe("staging", ISVC)
    assert (observed.latest_created, observed.percent_of(CANARY)) == (CANARY, 10)


def test_serverless_fixtures_do_not_read_as_raw() -> None:
    """Every Serverless fixture keeps Knative's fields (the raw mapping never applies)."""
    for name in [*fixture_names("isvc-canary"), "isvc-promoted"]:
        assert load(name)["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
            "Serverless"
        )
