"""`sluice local up/status/down` as a user runs them: real processes, cleaned up completely."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gitops_repo import commit_to_remote
from support.gitrepo import create_git_remote

from controller.local.state import pid_matches, read_json
from models.pinned_requirements import pinned

pytestmark = pytest.mark.slow

ISVC = "fraud"
REVISION = f"{ISVC}-predictor-00001"
KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - fraud.yaml
"""


def save_model(path: Path) -> str:
    """A tiny scikit-learn MLflow model in a directory; its file:// URI."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"amount": [1.0, 5.0, 9.0, 2.0], "hour": [1, 2, 3, 4]})
    model = LogisticRegression().fit(frame, [0, 1, 1, 0])
    mlflow.sklearn.save_model(model, str(path), pip_requirements=pinned())
    return path.as_uri()


class Cli:
    """Runs `sluice` in a subprocess with its state under one directory."""

    def __init__(self, state_dir: Path, remote: str) -> None:
        self.state_dir = state_dir
        self.remote = remote
        self.env = {**os.environ, "SLUICE_STATE_DIR": str(state_dir)}

    def __call__(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller", "local", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self("status", "--json")))

    def recorded(self) -> list[tuple[int, list[str], int | None]]:
        """(pid, markers, port) of each component and model server in the state files."""
        root = self.state_dir / "local"
        stack = read_json(root / "stack.json") or {}
        runtime = read_json(root / "runtime.json") or {}
        out = [(e["pid"], e["markers"], e.get("port")) for e in stack.values() if e.get("pid")]
        for revision, info in (runtime.get("servers") or {}).items():
            out.append((info["pid"], [str(root / "revisions" / revision)], info["port"]))
        out += [(0, [], int(port)) for port in (runtime.get("ports") or {}).values()]
        return out


def port_free(port: int) -> bool:
    """Nothing listens on the port (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_serving(cli: Cli) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        status = cli.status()
        objects = status["inferenceServices"]
        traffic = objects[0]["status"]["components"]["predictor"].get("traffic") if objects else []
        if traffic and traffic[0].get("revisionName") == REVISION:
            return status
        assert time.monotonic() < deadline, f"nothing served: {status}"
        time.sleep(0.5)


def assert_all_gone(recorded: list[tuple[int, list[str], int | None]]) -> None:
    deadline = time.monotonic() + 15
    while True:
        alive = [pid for pid, markers, _ in recorded if pid and pid_matches(pid, *markers)]
        busy = [port for _, _, port in recorded if port and not port_free(port)]
        if not alive and not busy:
            return
        assert time.monotonic() < deadline, f"still running: {alive}, ports in use: {busy}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """`sluice local up` on a remote whose local overlay serves a tiny file:// model."""
    root = tmp_path_factory.mktemp("local-commands")
    remote = create_git_remote(root)
    uri = save_model(root / "model")

    def change(tree: Path) -> None:
        overlay = tree / "manifests" / "overlays" / "local"
        overlay.mkdir(parents=True)
        (overlay / "kustomization.yaml").write_text(KUSTOMIZATION)
        predictor = {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": uri}}
        document = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": ISVC},
            "spec": {"predictor": predictor},
        }
        (overlay / "fraud.yaml").write_text(json.dumps(document))

    commit_to_remote(remote, root / "work", "Serve a tiny model", change)
    cli = Cli(root / "state", remote.url)
    cli("up", "--env", "local", "--repo", remote.url, "--alert-for", "20s", "--rule-interval", "1s")
    try:
        yield cli
    finally:
        recorded = cli.recorded()
        cli("down")
        assert_all_gone(recorded)


def test_status_reports_running_components_and_served_revision(cli: Cli) -> None:
    """`status --json` lists every component running and the InferenceService at 100 %."""
    status = wait_serving(cli)
    states = {name: entry["state"] for name, entry in status["components"].items()}
    names = ("mlflow", "alertmanager", "prometheus", "runtime", "status-page")
    assert states == dict.fromkeys(names, "running")
    (obj,) = status["inferenceServices"]
    assert (obj["apiVersion"], obj["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert obj["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    assert status["applications"][0]["status"]["sync"]["status"] == "Synced"


def test_status_table_names_the_revisions(cli: Cli) -> None:
    """The table shows the InferenceService's latest rolled-out revision and its traffic."""
    wait_serving(cli)
    out = cli("status")
    assert "fraud-predictor-00001 100%" in out
    assert "running" in out


def prometheus_get(cli: Cli, path: str, **params: str) -> Any:
    """GET ``path`` of the stack's Prometheus API; its ``data``."""
    url = cli.status()["components"]["prometheus"]["url"]
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{query}", timeout=5) as response:  # noqa: S310
        return json.loads(response.read())["data"]


def test_prometheus_scrapes_the_router_and_the_served_model_server(cli: Cli) -> None:
    """Prometheus's targets show the router and revision 1's labelled model server up."""
    wait_serving(cli)
    runtime = read_json(cli.state_dir / "local" / "runtime.json") or {}
    router = ("sluice-routers", f"http://127.0.0.1:{runtime['ports'][ISVC]}/metrics")
    server = (
        "kserve-model-servers",
        f"http://127.0.0.1:{runtime['servers'][REVISION]['port']}/metrics",
    )
    deadline = time.monotonic() + 30
    while True:
        active = prometheus_get(cli, "/api/v1/targets", state="active")["activeTargets"]
        targets = {(t["labels"]["job"], t["scrapeUrl"]): t for t in active}
        health = {key: targets[key]["health"] for key in (router, server) if key in targets}
        if health == {router: "up", server: "up"}:
            break
        assert time.monotonic() < deadline, f"targets never up: {health} of {list(targets)}"
        time.sleep(0.5)
    labels = targets[server]["labels"]
    assert labels["revision_name"] == REVISION
    assert labels["configuration_name"] == f"{ISVC}-predictor"
    assert labels["namespace_name"] == "default"
    # How long after the runtime named the server Prometheus first scraped it (for the README).
    config = cli.state_dir / "local" / "prometheus" / "prometheus.yml"
    selector = f'up{{job="kserve-model-servers",revision_name="{REVISION}"}}[10m]'
    [series] = prometheus_get(cli, "/api/v1/query", query=selector)["result"]
    first = float(series["values"][0][0]) - config.stat().st_mtime
    print(f"\nfirst model-server sample {first:.1f}s after the scrape config named it")


def drift_alert(cli: Cli) -> tuple[int, float, float]:
    """Prometheus's pid, and `for:` and group interval of its SluiceFeatureDrift in seconds."""
    prometheus = (read_json(cli.state_dir / "local" / "stack.json") or {})["prometheus"]
    url = f"{prometheus['url']}/api/v1/rules"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1)
        groups = json.loads(response.read())["data"]["groups"]
    rules = [(g, r) for g in groups for r in g["rules"] if r["name"] == "SluiceFeatureDrift"]
    [(group, rule)] = rules
    return prometheus["pid"], rule["duration"], group["interval"]


def test_prometheus_loads_the_cluster_rules_and_reloads_them_on_up(cli: Cli) -> None:
    """The rules of manifests/monitoring/ are loaded with `--alert-for` and `--rule-interval`;
    `up` again with another `--alert-for` reloads the running Prometheus."""
    pid, *timing = drift_alert(cli)
    assert timing == [20, 1]
    cli("up", "--env", "local", "--repo", cli.remote, "--alert-for", "30s", "--rule-interval", "1s")
    assert drift_alert(cli) == (pid, 30, 1)


def get(url: str) -> tuple[int, str]:
    """GET ``url`` straight (no proxy): status and body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        return response.status, response.read().decode()


def test_status_page_is_read_only_and_restarted_when_dead(cli: Cli) -> None:
    """The stack's status page (`local url status-page`) serves `/` and `/healthz`, and no
    hook or metrics; killed, it shows as crashed, and `up` starts it again on its port."""
    url = cli("url", "status-page").strip()
    assert get(f"{url}/healthz")[0] == 200
    status, page = get(f"{url}/")
    assert status == 200
    assert "<h1>sluice status</h1>" in page
    for path in ("/metrics", "/hooks/alertmanager"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"{url}{path}")
        assert refused.value.code == 404
    entry = cli.status()["components"]["status-page"]
    os.kill(entry["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cli.status()["components"]["status-page"]["state"] != "crashed":
        assert time.monotonic() < deadline, "the killed page still shows as running"
        time.sleep(0.2)
    out = cli("up", "--env", "local", "--repo", cli.remote)
    assert "mlflow        already running" in out
    assert "status-page   ready in " in out
    after = cli.status()["components"]["status-page"]
    assert (after["state"], after["port"]) == ("running", entry["port"])
    assert get(f"{url}/")[0] == 200


def test_down_leaves_no_process_or_port(cli: Cli) -> None:
    """`down` stops every recorded pid and frees every recorded port."""
    recorded = cli.recorded()
    assert len(recorded) >= 7  # 5 components, a model server, a router port
    cli("down")
    assert_all_gone(recorded)
    assert {e["state"] for e in cli.status()["components"].values()} == {"stopped"}


def test_up_again_reuses_ports_and_serves(cli: Cli) -> None:
    """A second `up` after `down` starts everything again on the same ports and serves; while
    another process holds the status page's port, `up` says so in one line and exits 2."""
    ports = {name: e.get("port") for name, e in cli.status()["components"].items()}
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", ports["status-page"]))
        squatter.listen()
        refused = cli.run("up", "--env", "local", "--repo", cli.remote)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        f"sluice: error: the status page cannot start: port {ports['status-page']} on "
        "127.0.0.1 is taken by another process; stop what listens there"
    ), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    cli("up", "--env", "local", "--repo", cli.remote)
    wait_serving(cli)
    after = cli.status()["components"]
    assert {name: e.get("port") for name, e in after.items()} == ports
    assert {e["state"] for e in after.values()} == {"running"}
