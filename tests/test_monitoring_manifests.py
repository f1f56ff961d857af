"""The platform manifests (serving runtime, controller, monitoring) render, validate and agree
with the code they run: its flags, its settings, its metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from schemas import ROOT, render, schema_errors

from controller.backends.kubernetes_target import observation_from
from controller.gates.graph_traffic import step_metric_names
from controller.gates.metrics_profile import BUILTIN_PROFILES, SLUICE_WRAPPER, MetricsProfile
from controller.local.graph_metrics import SWITCH_REQUESTS, GraphStepMetrics, StepCall
from controller.local.serving.server import parse_args as serving_args
from controller.serve.kpi_series import KPI_REQUESTS, KPI_VALUE
from controller.settings import load_settings

PLATFORM = (
    "manifests/serving-runtime", "manifests/controller", "manifests/monitoring",
    "manifests/monitoring/knative",
)  # fmt: skip
UNIT_TESTS = ROOT / "tests/promtool/sluice-rules.test.yaml"
#: Knative's queue-proxy request metrics: OpenCensus (Knative <= 1.18), then OpenTelemetry
#: (Knative >= 1.19.8, 1.20.1, 1.21). Only the canary recording rules read them.
QUEUE_PROXY_METRICS = {
    "revision_app_request_count", "revision_app_request_latencies_bucket",
    "kn_serving_invocation_duration_seconds_count", "kn_serving_invocation_duration_seconds_bucket",
}  # fmt: skip
#: Sluice's graph router's step calls, in seconds and in milliseconds, and Switch decisions.
GRAPH_METRICS = {
    "sluice_graph_step_duration_seconds_count", "sluice_graph_step_duration_seconds_bucket",
    "sluice_graph_step_request_count", "sluice_graph_step_request_latencies_bucket",
    f"{SWITCH_REQUESTS}_total",
}  # fmt: skip
#: Metrics the dashboard and rules may read: Knative's queue-proxy, the serving wrapper's drift
#: metrics, the graph router's, the controller's (`sluice serve` and the rollout), and
#: Prometheus' own `up`.
KNOWN_METRICS = QUEUE_PROXY_METRICS | GRAPH_METRICS | {
    "sluice_feature_drift", "sluice_prediction_drift", "sluice_drift_window_rows",
    "sluice_dataset_drift_share",
    "sluice_rollout_phase", "sluice_canary_weight", "sluice_gate_results_total",
    "sluice_reconcile_duration_seconds_sum", "sluice_reconcile_duration_seconds_count",
    "sluice_git_push_retries_total",
    "sluice_poll_runs_total", "sluice_proposals_triggered_total", "sluice_webhook_deliveries_total",
    "sluice_watch_errors_total",
    KPI_VALUE, KPI_REQUESTS,  # sluice serve's KPI series
    "up",
}  # fmt: skip
#: The classic-histogram buckets (seconds) of Knative's kn.serving.invocation.duration.
OTEL_BUCKETS = {
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
    "7.5", "10", "+Inf",
}  # fmt: skip
#: A metric selector as the rules and the dashboard write them: always with braces.
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (document,) = [d for d in documents if d["kind"] == kind]
    return document


def model_servers(monitoring: list[dict[str, Any]]) -> dict[str, Any]:
    """The PodMonitor of the InferenceServices' pods."""
    (document,) = [
        d for d in monitoring
        if d["kind"] == "PodMonitor" and d["metadata"]["name"] == "sluice-model-servers"
    ]  # fmt: skip
    return document


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: it comes with Prometheus (make setup installs the "
            "prometheus package)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def runtime() -> list[dict[str, Any]]:
    return render("manifests/serving-runtime")


@pytest.fixture(scope="module")
def controller() -> list[dict[str, Any]]:
    return render("manifests/controller")


@pytest.fixture(scope="module")
def monitoring() -> list[dict[str, Any]]:
    return render("manifests/monitoring")


@pytest.fixture(scope="module")
def knative() -> list[dict[str, Any]]:
    return render("manifests/monitoring/knative")


@pytest.fixture(scope="module")
def rule_groups(monitoring: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(monitoring, "PrometheusRule")["spec"]["groups"]
    return groups


@pytest.fixture(scope="module")
def model_namespaces() -> set[str]:
    return {
        d["metadata"]["namespace"]
        for environment in ("staging", "production")
        for d in render(f"manifests/overlays/{environment}")
    }


@pytest.mark.parametrize("directory", PLATFORM)
def test_platform_kustomization_renders_and_validates(directory: str) -> None:
    """Each platform directory renders with kubectl kustomize; every object passes its schema."""
    documents = render(directory)
    assert documents
    assert [e for d in documents for e in schema_errors(d)] == []


# The serving runtime ---------------------------------------------------------------------------


def test_runtime_serves_the_models_the_overlays_declare(runtime: list[dict[str, Any]]) -> None:
    """Every InferenceService names sluice-mlflow, whose formats and protocols cover it."""
    spec = one(runtime, "ClusterServingRuntime")["spec"]
    name = one(runtime, "ClusterServingRuntime")["metadata"]["name"]
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert formats["mlflow"]["autoSelect"] is True
    assert {"v1", "v2"} <= set(spec["protocolVersions"])
    for environment in ("local", "staging", "production"):
        for isvc in render(f"manifests/overlays/{environment}"):
            model = isvc["spec"]["predictor"]["model"]
            assert model["runtime"] == name
            assert model["modelFormat"]["name"] in formats
            assert model.get("protocolVersion", "v1") in spec["protocolVersions"]


def test_runtime_container_runs_the_serving_wrapper_on_the_storage_path(
    runtime: list[dict[str, Any]],
) -> None:
    """The container's arguments parse with the wrapper's own parser: KServe's name, the storage
    initializer's /mnt/models, every address, port 8080."""
    (container,) = one(runtime, "ClusterServingRuntime")["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["command"] == ["python", "-m", "controller.local.serving"]
    args = serving_args([a.replace("{{.Name}}", "fraud-detector") for a in container["args"]])
    assert (args.model_name, args.storage_uri) == ("fraud-detector", "/mnt/models")
    assert (args.host, args.http_port) == ("0.0.0.0", 8080)  # noqa: S104 (a pod listens on all)
    assert [p["containerPort"] for p in container["ports"]] == [args.http_port]
    assert container["securityContext"]["runAsNonRoot"] is True


# The controller --------------------------------------------------------------------------------


def test_controller_config_is_valid_sluice_settings(
    controller: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The ConfigMap's sluice.yaml loads as Sluice's settings and matches the ports in use."""
    config = one(controller, "ConfigMap")
    path = tmp_path / "sluice.yaml"
    path.write_text(config["data"]["sluice.yaml"], encoding="utf-8")
    settings = load_settings(path)
    deployment = one(controller, "Deployment")["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SLUICE_CONFIG"]["value"] == "/etc/sluice/sluice.yaml"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["mountPath"] == "/etc/sluice"
    (volume,) = [v for v in deployment["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    assert [p["containerPort"] for p in container["ports"]] == [settings.serve_port]
    assert settings.serve_host == "0.0.0.0"  # noqa: S104 (behind a Service)
    (state,) = [m for m in container["volumeMounts"] if m["name"] == "state"]
    assert Path(state["mountPath"]) == settings.state_dir


def test_controller_runs_sluice_serve_with_secrets_only_by_reference(
    controller: list[dict[str, Any]],
) -> None:
    """`sluice serve --forge github`, tokens from the Secret sluice-secrets, no Secret in Git."""
    assert "Secret" not in {d["kind"] for d in controller}
    (container,) = one(controller, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [*container["command"], *container["args"]][:2] == ["sluice", "serve"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("SLUICE_GITHUB_TOKEN", "MLFLOW_TRACKING_TOKEN", "ARGOCD_AUTH_TOKEN"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "sluice-secrets"
    # The credential helper names the variable; the token itself is never in the manifest.
    assert "$SLUICE_GITHUB_TOKEN" in env["GIT_CONFIG_VALUE_0"]["value"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_controller_probes_and_service_use_the_served_routes(
    controller: list[dict[str, Any]],
) -> None:
    """Probes ask /healthz on the named port that the Service also targets, on 8686."""
    (container,) = one(controller, "Deployment")["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    service = one(controller, "Service")
    (service_port,) = service["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (8686, port["name"])
    pod_labels = one(controller, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_controller_may_only_read_inferenceservices_and_graphs_in_the_model_namespaces(
    controller: list[dict[str, Any]], model_namespaces: set[str]
) -> None:
    """One rule (get, list, watch on InferenceServices and InferenceGraphs, which `sluice
    status` lists), bound in each model namespace only;
    and the rollout leases in the controller's own namespace: get, create, update and delete
    on Leases there, and nothing else."""
    role = one(controller, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices", "inferencegraphs"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    account = one(controller, "ServiceAccount")["metadata"]
    deployment = one(controller, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    subjects = [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    bindings = [d for d in controller if d["kind"] == "RoleBinding"]
    readers = [b for b in bindings if b["roleRef"]["kind"] == "ClusterRole"]
    assert {b["metadata"]["namespace"] for b in readers} == model_namespaces
    for binding in readers:
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == subjects
    leases = one(controller, "Role")
    assert leases["metadata"]["namespace"] == account["namespace"]
    assert leases["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "delete"],
        }
    ]
    (holder,) = [b for b in bindings if b["roleRef"]["kind"] == "Role"]
    assert holder["metadata"]["namespace"] == account["namespace"]
    assert holder["roleRef"]["name"] == leases["metadata"]["name"]
    assert holder["subjects"] == subjects


# Monitoring ------------------------------------------------------------------------------------


def test_monitors_scrape_the_model_servers_and_the_controller(
    monitoring: list[dict[str, Any]],
    controller: list[dict[str, Any]],
    runtime: list[dict[str, Any]],
    model_namespaces: set[str],
) -> None:
    """The PodMonitor covers every model namespace, queue-proxy and model server; the
    ServiceMonitor selects the controller's Service by a label and a port it has."""
    pods = model_servers(monitoring)["spec"]
    assert set(pods["namespaceSelector"]["matchNames"]) == model_namespaces
    assert {e["port"] for e in pods["podMetricsEndpoints"]} == {
        "http-usermetric", "user-port", "http1",
    }  # fmt: skip
    # RawDeployment pods keep the runtime's port name, which Knative renames user-port.
    (container,) = one(runtime, "ClusterServingRuntime")["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["http1"]
    annotations = one(runtime, "ClusterServingRuntime")["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    services = one(monitoring, "ServiceMonitor")["spec"]
    service = one(controller, "Service")
    assert services["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert services["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in services["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }


def test_queue_proxy_series_name_their_revision_on_every_knative_version(
    monitoring: list[dict[str, Any]], rule_groups: list[dict[str, Any]]
) -> None:
    """Knative >= 1.19 puts the revision in OTel resource attributes, which a scrape sees only in
    target_info: the queue-proxy endpoint relabels the pod's namespace, revision and
    configuration onto the names promotion gives them (which the canary records read), never
    onto Knative <= 1.18's names, which its series carry already."""
    endpoints = {e["port"]: e for e in model_servers(monitoring)["spec"]["podMetricsEndpoints"]}
    relabelings = endpoints["http-usermetric"]["relabelings"]
    assert all(r.get("action", "replace") == "replace" for r in relabelings)
    assert {r["targetLabel"]: r["sourceLabels"] for r in relabelings} == {
        "k8s_namespace_name": ["__meta_kubernetes_namespace"],
        "kn_revision_name": ["__meta_kubernetes_pod_label_serving_knative_dev_revision"],
        "kn_configuration_name": ["__meta_kubernetes_pod_label_serving_knative_dev_configuration"],
    }
    (canary,) = [g for g in rule_groups if g["name"] == "sluice-canary.rules"]
    expressions = " ".join(r["expr"] for r in canary["rules"])
    for source, target in (
        ("k8s_namespace_name", "namespace_name"),
        ("kn_revision_name", "revision_name"),
        ("kn_configuration_name", "configuration_name"),
    ):
        assert f'"{target}", "$1", "{source}", "(.+)"' in expressions


def relabel(
    relabelings: list[dict[str, Any]], labels: dict[str, str], *, hidden: bool = False
) -> dict[str, str] | None:
    """Prometheus' relabelling (replace, keep, drop) of a target's labels; None: dropped.
    ``hidden``: with the ``__`` labels (``__address__``) too."""
    labels = dict(labels)
    for rule in relabelings:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)  # Prometheus anchors its RE2
        action = rule.get("action", "replace")
        if action in ("keep", "drop"):
            if (match is None) == (action == "keep"):
                return None
        elif action == "replace" and match is not None:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            labels[rule["targetLabel"]] = match.expand(template)
    return {k: v for k, v in labels.items() if hidden or not k.startswith("__")}


def pod_target(namespace: str, **pod_labels: str) -> dict[str, str]:
    """The meta labels Prometheus' pod discovery gives a target (label names sanitised)."""
    labels = {"__meta_kubernetes_namespace": namespace}
    for name, value in pod_labels.items():
        labels[f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', name)}"] = value
    return labels


#: Pod labels KServe puts on RawDeployment predictor pods (kserve/kserve pkg/constants
#: GetRawServiceLabel: app is "isvc." + the Deployment's name; kserve#5672: a canary's
#: Deployment is <isvc>-<name>-predictor) and Knative's on a Serverless revision's pods.
RAW_PRIMARY = {"app": "isvc.fraud-detector-predictor", "component": "predictor"}
RAW_CANARY = {"app": "isvc.fraud-detector-v8-predictor", "component": "predictor"}
KNATIVE_POD = {
    "serving.knative.dev/revision": "fraud-detector-predictor-00004",
    "serving.knative.dev/configuration": "fraud-detector-predictor",
    "app": "fraud-detector-predictor-00004",
}


@pytest.mark.parametrize(
    ("pod", "revision"),
    [
        (RAW_PRIMARY, "fraud-detector-predictor"),
        (RAW_CANARY, "fraud-detector-v8-predictor"),
        # A KServe whose app label has no prefix (the value is the Deployment's name as is).
        ({"app": "fraud-detector-v8-predictor"}, "fraud-detector-v8-predictor"),
    ],
)
def test_raw_deployment_model_servers_are_labelled_by_their_deployment(
    monitoring: list[dict[str, Any]], pod: dict[str, str], revision: str
) -> None:
    """A RawDeployment pod (no Knative labels) is scraped on http1 with revision_name from its
    app label (isvc. stripped), configuration_name <isvc>-predictor and its namespace, the
    names the sluice-wrapper profile's gates select a revision by."""
    endpoints = {e["port"]: e for e in model_servers(monitoring)["spec"]["podMetricsEndpoints"]}
    raw = endpoints["http1"]
    assert (raw["path"], raw["interval"]) == ("/metrics", "15s")
    target = pod_target(
        "models-staging", **pod, **{"serving.kserve.io/inferenceservice": "fraud-detector"}
    )
    labelled = relabel(raw["relabelings"], target)
    assert labelled == {
        "namespace_name": "models-staging",
        "configuration_name": "fraud-detector-predictor",
        "revision_name": revision,
    }
    assert set(labelled) == {
        SLUICE_WRAPPER.namespace_label, SLUICE_WRAPPER.configuration_label,
        SLUICE_WRAPPER.revision_label,
    }  # fmt: skip


def test_raw_revision_names_are_the_ones_the_cluster_target_reports(
    monitoring: list[dict[str, Any]],
) -> None:
    """The gates query the revisions --target kubernetes reports for a RawDeployment canary
    (tests/fixtures/cluster/isvc-raw-canary-10.json); the labels on the two Deployments' pods
    relabel to exactly those names, in the configuration the target reports."""
    isvc = json.loads((ROOT / "tests/fixtures/cluster/isvc-raw-canary-10.json").read_text())
    observed = observation_from(isvc, None)
    (canary,) = isvc["spec"]["canary"]
    endpoints = {e["port"]: e for e in model_servers(monitoring)["spec"]["podMetricsEndpoints"]}
    scraped = set()
    for deployment in (
        "fraud-detector-predictor",
        f"fraud-detector-{canary['predictor']['name']}-predictor",
    ):
        pod = {"app": f"isvc.{deployment}", "serving.kserve.io/inferenceservice": "fraud-detector"}
        labels = relabel(endpoints["http1"]["relabelings"], pod_target(observed.namespace, **pod))
        assert labels is not None
        assert labels["configuration_name"] == observed.configuration
        scraped.add(labels["revision_name"])
    assert {t.revision for t in observed.traffic} == scraped
    assert observed.latest_created in scraped


def test_serverless_model_servers_keep_knatives_labels_and_are_scraped_once(
    monitoring: list[dict[str, Any]],
) -> None:
    """A Knative pod is labelled from serving.knative.dev/* on user-port as before; the http1
    endpoint drops it, so no series of it is scraped twice under other names."""
    endpoints = {e["port"]: e for e in model_servers(monitoring)["spec"]["podMetricsEndpoints"]}
    target = pod_target(
        "models-staging", **KNATIVE_POD, **{"serving.kserve.io/inferenceservice": "fraud-detector"}
    )
    assert relabel(endpoints["user-port"]["relabelings"], target) == {
        "namespace_name": "models-staging",
        "configuration_name": "fraud-detector-predictor",
        "revision_name": "fraud-detector-predictor-00004",
    }
    assert relabel(endpoints["http1"]["relabelings"], target) is None


def container_target(
    container: str, port: int | None, *, init: bool = False, **pod_labels: str
) -> dict[str, str]:
    """What pod discovery gives one container port (``port`` None: a container without ports,
    for which Prometheus makes a port-free target)."""
    target = pod_target("models-staging", **pod_labels)
    target |= {
        "__meta_kubernetes_pod_ip": "10.1.2.3",
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_init": str(init).lower(),
        "__address__": "10.1.2.3" if port is None else f"10.1.2.3:{port}",
    }
    if port is not None:
        target["__meta_kubernetes_pod_container_port_number"] = str(port)
    return target


def test_graph_routers_are_scraped_on_kserves_router_port(
    monitoring: list[dict[str, Any]], model_namespaces: set[str]
) -> None:
    """The graph routers' PodMonitor selects KServe's router pods by their graph label in every
    model namespace and scrapes each pod's router once on 8080: Knative's user-port in
    Serverless mode, the port-free container in RawDeployment mode; never the queue-proxy, a
    mesh sidecar or an init container. The model servers' PodMonitor selects no router pod."""
    (routers,) = [
        d for d in monitoring
        if d["kind"] == "PodMonitor" and d["metadata"]["name"] == "sluice-graph-routers"
    ]  # fmt: skip
    spec = routers["spec"]
    assert set(spec["namespaceSelector"]["matchNames"]) == model_namespaces
    assert spec["selector"]["matchExpressions"] == [
        {"key": "serving.kserve.io/inferencegraph", "operator": "Exists"}
    ]
    models = model_servers(monitoring)["spec"]["selector"]["matchExpressions"]
    assert {e["key"] for e in models} == {"serving.kserve.io/inferenceservice"}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert "port" not in endpoint
    assert endpoint["path"] == "/metrics"
    graph = {"serving.kserve.io/inferencegraph": "market-regime"}
    scraped = {}
    for container, port, init in (
        ("user-container", 8080, False),  # Serverless: Knative's user-port
        ("queue-proxy", 8012, False),
        ("queue-proxy", 9091, False),
        ("istio-proxy", 15090, False),
        ("istio-proxy", None, False),
        ("market-regime", None, False),  # RawDeployment: the router declares no port
        ("istio-init", None, True),
    ):
        target = container_target(container, port, init=init, **graph)
        labels = relabel(endpoint["relabelings"], target, hidden=True)
        if labels is not None:
            scraped[(container, port)] = labels["__address__"]
    assert scraped == {
        ("user-container", 8080): "10.1.2.3:8080",
        ("market-regime", None): "10.1.2.3:8080",
    }


def test_knative_is_told_to_export_queue_proxy_request_metrics(
    knative: list[dict[str, Any]], monitoring: list[dict[str, Any]]
) -> None:
    """manifests/monitoring/knative patches one key of Knative's config-observability in
    knative-serving (request metrics are off by default since Knative 1.19), server-side and
    never pruned or deleted by Argo CD; the sluice-system kustomization does not render it."""
    (config,) = knative
    metadata = config["metadata"]
    assert (config["kind"], metadata["name"], metadata["namespace"]) == (
        "ConfigMap", "config-observability", "knative-serving",
    )  # fmt: skip
    assert config["data"] == {"request-metrics-protocol": "prometheus"}
    options = metadata["annotations"]["argocd.argoproj.io/sync-options"].split(",")
    assert {o.strip() for o in options} >= {"ServerSideApply=true", "Prune=false", "Delete=false"}
    assert "labels" not in metadata
    assert "config-observability" not in {d["metadata"]["name"] for d in monitoring}


def test_rules_pass_promtool_check_and_unit_tests(
    rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The PrometheusRule's groups, written as the plain rule file the unit tests load, pass
    `promtool check rules` and `promtool test rules`."""
    test_file = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    (rule_file,) = test_file["rule_files"]
    (tmp_path / rule_file).write_text(yaml.safe_dump({"groups": rule_groups}), encoding="utf-8")
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    for command in (["check", "rules", rule_file], ["test", "rules", UNIT_TESTS.name]):
        result = subprocess.run(
            [promtool(), *command], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_made_to_fire_by_a_unit_test(rule_groups: list[dict[str, Any]]) -> None:
    """Each alert has a promtool test case that expects it firing."""
    alerts = {r["alert"] for g in rule_groups for r in g["rules"] if "alert" in r}
    assert {"SluiceFeatureDrift", "SluiceCanaryFailed"} <= alerts
    tests = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == alerts


def test_drift_alert_carries_what_the_retrain_dispatch_needs(
    rule_groups: list[dict[str, Any]],
) -> None:
    """SluiceFeatureDrift is sustained (10 m), needs a minimum window, and its labels and
    annotations give model, version, environment and the drifted features."""
    (rule,) = [r for g in rule_groups for r in g["rules"] if r.get("alert") == "SluiceFeatureDrift"]
    assert rule["for"] == "10m"
    assert "sluice_dataset_drift_share{} >= 0.5" in rule["expr"]
    assert "sluice_drift_window_rows{} >=" in rule["expr"]
    assert rule["labels"]["severity"] == "warning"
    assert "sluice_feature_drift" in rule["annotations"]["drifted_features"]


def test_canary_recording_rules_are_per_revision(rule_groups: list[dict[str, Any]]) -> None:
    """Success rate and p99 latency are recorded per namespace, configuration and revision."""
    records = {r["record"]: r["expr"] for g in rule_groups for r in g["rules"] if "record" in r}
    for name in (
        "revision:revision_app_request_success:ratio_rate1m",
        "revision:revision_app_request_latencies:p99_rate1m",
    ):
        assert "by (namespace_name, configuration_name, revision_name" in records[name]


def test_rules_read_only_known_series(rule_groups: list[dict[str, Any]]) -> None:
    """Every metric a rule reads is exported by something Sluice runs on, or recorded."""
    recorded = {r["record"] for g in rule_groups for r in g["rules"] if "record" in r}
    read = {name for g in rule_groups for r in g["rules"] for name in _SELECTOR.findall(r["expr"])}
    assert read <= KNOWN_METRICS | recorded


def test_canary_records_read_both_queue_proxy_shapes(rule_groups: list[dict[str, Any]]) -> None:
    """Each canary record reads Knative <= 1.18's OpenCensus series and Knative >= 1.19.8's
    OpenTelemetry ones: 5xx by response_code_class or by http_response_status_code, latencies in
    milliseconds from the seconds histogram; the share is computed from the request record."""
    (canary,) = [g for g in rule_groups if g["name"] == "sluice-canary.rules"]
    for rule in canary["rules"]:
        name, expr = rule["record"], rule["expr"]
        read = set(_SELECTOR.findall(expr))
        if name == "revision:revision_app_request_share:ratio_rate1m":
            assert read == {"revision:revision_app_request_count:rate1m"}
        elif ":revision_app_request_latencies:" in name:
            assert read == {
                "revision_app_request_latencies_bucket",
                "kn_serving_invocation_duration_seconds_bucket",
            }, name
            assert "1000 * histogram_quantile(0.99," in expr, name
        else:
            assert read == {
                "revision_app_request_count", "kn_serving_invocation_duration_seconds_count",
            }, name  # fmt: skip
        if ":revision_app_request_success:" in name:
            assert 'response_code_class!="5xx"' in expr, name
            assert 'http_response_status_code!~"5.."' in expr, name


def test_every_canary_record_is_unit_tested_on_each_shape(
    rule_groups: list[dict[str, Any]],
) -> None:
    """The promtool tests check every canary record on OpenCensus series alone and on
    OpenTelemetry series alone, the latter with the queue-proxy's bucket layout in seconds."""
    (canary,) = [g for g in rule_groups if g["name"] == "sluice-canary.rules"]
    records = {r["record"] for r in canary["rules"]}
    shapes = {"revision_app_request": "OpenCensus", "kn_serving_invocation_duration": "OTel"}
    covered: dict[str, set[str]] = {shape: set() for shape in shapes.values()}
    otel_buckets: set[str] = set()
    for test in yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]:
        series = [s["series"] for s in test.get("input_series", [])]
        used = {v for prefix, v in shapes.items() for s in series if s.startswith(prefix)}
        if len(used) != 1:
            continue
        (shape,) = used
        for case in test.get("promql_expr_test", []):
            covered[shape] |= {r for r in records if re.search(rf"{re.escape(r)}\b", case["expr"])}
        if shape == "OTel":
            otel_buckets |= {
                m for s in series if "_bucket{" in s for m in re.findall(r'le="([^"]+)"', s)
            }
    assert covered == dict.fromkeys(shapes.values(), records)
    assert otel_buckets == OTEL_BUCKETS


@pytest.mark.parametrize("profile", BUILTIN_PROFILES.values(), ids=list(BUILTIN_PROFILES))
def test_graph_records_read_what_the_graph_router_exports(
    rule_groups: list[dict[str, Any]], profile: MetricsProfile
) -> None:
    """Under every built-in profile, each series the local graph router exports (a failed step
    call, a Switch without a match) is read by the graph records: errors by the profile's status
    label and error matcher, the namespace copied to namespace_name where it is named else."""
    steps = GraphStepMetrics("models-staging", "market-regime", profile)
    steps.observe(StepCall("by-regime", "volatile", "market-regime-volatile", "", "", 503), 1500)
    steps.observe_switch("by-regime", "")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(steps)
    text = steps.counter_text() + generate_latest(registry).decode()
    names = step_metric_names(profile)
    # Not read: the latency sum, and the histogram's count where a counter of its own counts.
    unread = {f"{names.latency}_sum", f"{names.latency}_count"} - {names.requests}
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{", text, re.MULTILINE)) - unread
    (group,) = [g for g in rule_groups if g["name"] == "sluice-graph.rules"]
    expressions = " ".join(r["expr"] for r in group["rules"])
    recorded = {r["record"] for r in group["rules"]}
    assert exported <= set(_SELECTOR.findall(expressions)) <= GRAPH_METRICS | recorded
    for family in text_string_to_metric_families(text):
        assert all(profile.namespace_label in sample.labels for sample in family.samples)
    if profile.namespace_label != "namespace_name":
        assert f'"namespace_name", "$1", "{profile.namespace_label}", "(.+)"' in expressions
    errors = rf'{names.requests}\{{{profile.status_label}=~?"{re.escape(profile.error_matcher)}"\}}'
    assert re.search(errors, expressions), errors


def test_graph_alerts_need_a_minimum_request_rate(rule_groups: list[dict[str, Any]]) -> None:
    """Every graph alert is sustained and needs 0.1 requests a second where it looks, so one
    failure of two requests fires nothing; each names its graph and environment."""
    (group,) = [g for g in rule_groups if g["name"] == "sluice-graph.alerts"]
    assert {r["alert"] for r in group["rules"]} == {
        "SluiceGraphStepErrors", "SluiceGraphNoRoute", "SluiceGraphStepSlow",
    }  # fmt: skip
    for rule in group["rules"]:
        assert rule["for"] in ("5m", "10m"), rule["alert"]
        assert re.search(r"\) >= 0\.1,|\{\} >= 0\.1,", rule["expr"]), rule["alert"]
        assert '"environment", "$1", "namespace_name", "models-(.+)"' in rule["expr"]
        assert "$labels.graph_name" in rule["annotations"]["summary"]


def test_dashboard_is_loaded_by_grafana_and_queries_only_known_series(
    monitoring: list[dict[str, Any]], rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The dashboard ConfigMap has Grafana's sidecar label; every query is valid PromQL over
    metrics that exist (exported or recorded) and covers traffic, revisions, drift, controller."""
    (config_map,) = [
        d for d in monitoring
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]  # fmt: skip
    (text,) = config_map["data"].values()
    dashboard = json.loads(text)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    recorded = {r["record"] for g in rule_groups for r in g["rules"] if "record" in r}
    used = {name for e in expressions for name in _SELECTOR.findall(e)}
    assert used <= KNOWN_METRICS | recorded
    # Knative's request metrics differ between versions; the records are the same on all of them.
    variables_read = {
        name
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
        for name in re.findall(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)", v["query"]["query"])
    }
    assert variables_read
    assert (used | variables_read) <= (KNOWN_METRICS - QUEUE_PROXY_METRICS) | recorded
    for needle in (
        "sluice_canary_weight", "revision:revision_app_request_share:ratio_rate1m",
        "revision:revision_app_request_success:ratio_rate1m",
        "revision:revision_app_request_latencies:p99_rate1m", "sluice_feature_drift",
        "sluice_gate_results_total", "sluice_reconcile_duration_seconds_sum",
        "sluice_git_push_retries_total", KPI_VALUE, KPI_REQUESTS,
    ):  # fmt: skip
        assert needle in used
    # Grafana's variables become plain regexes, then promtool parses every query.
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    plain = [
        re.sub(r"\$(\w+)", lambda m: ".*" if m[1] in variables else m[0], e) for e in expressions
    ]
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(plain)]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool(), "check", "rules", "dashboard.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
