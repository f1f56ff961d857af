"""The local Prometheus loads the cluster's rules: the rule file, its overrides, its errors, and a
real Prometheus that lists the alerts after every rewrite of its config."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.errors import ConfigError
from controller.local import stack
from controller.local.processes import ManagedProcess
from controller.local.rules import (
    RULES_MANIFEST,
    default_rules_manifest,
    load_rule_groups,
    local_rule_groups,
    validate_duration,
    write_local_rules,
)
from controller.local.runtime import RUNTIME_FILE
from controller.local.runtime import _parse as parse_runtime_args
from controller.local.scrape import (
    ModelServerTarget,
    PrometheusScrapeConfig,
    ScrapeTargets,
    peer_targets,
    write_scrape_config,
)
from controller.local.services import start_prometheus
from controller.local.stack import StackRequest, write_rules
from controller.local.state import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / RULES_MANIFEST


def manifest_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["spec"][
        "groups"
    ]
    return groups


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1)
        return json.load(response)


# -- the rule file --------------------------------------------------------------------------------


def test_without_overrides_the_file_holds_the_manifests_groups(tmp_path: Path) -> None:
    """The written file's groups are the PrometheusRule's spec.groups, unchanged."""
    path = write_local_rules(tmp_path / "rules.yml", MANIFEST)
    assert json.loads(path.read_text()) == {"groups": manifest_groups()}


def test_overrides_shorten_every_for_and_interval_and_keep_every_group() -> None:
    """alert_for replaces each alert's `for:`, rule_interval each interval; the rest stays."""
    original = manifest_groups()
    local = local_rule_groups(original, alert_for="20s", rule_interval="1s")

    assert [g["name"] for g in local] == [g["name"] for g in original]
    assert {g["interval"] for g in local} == {"1s"}
    before, after = alerts(original), alerts(local)
    assert before.keys() == after.keys() >= {"SluiceFeatureDrift", "SluicePredictionDrift"}
    for name, rule in after.items():
        # An alert that fires at once on the cluster still does; every sustained one waits 20s.
        assert rule.get("for") == ("20s" if "for" in before[name] else None), name
        assert {k: v for k, v in rule.items() if k != "for"} == {
            k: v for k, v in before[name].items() if k != "for"
        }
    records = [[r for r in g["rules"] if "record" in r] for g in local]
    assert records == [[r for r in g["rules"] if "record" in r] for g in original]
    assert manifest_groups() == original  # the input is not modified


def test_written_rule_file_passes_promtool_check_rules(tmp_path: Path) -> None:
    """The overridden rule file is one Prometheus accepts (`promtool check rules`)."""
    path = write_local_rules(tmp_path / "rules.yml", MANIFEST, alert_for="20s", rule_interval="1s")
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("value", ["0", "20s", "1m30s", "10m", "1h", "250ms", "1y2w3d4h5m6s7ms"])
def test_prometheus_durations_are_accepted(value: str) -> None:
    """Durations in Prometheus's syntax pass validation unchanged."""
    assert validate_duration(value, what="alert_for") == value


@pytest.mark.parametrize("value", ["", "20", "1.5s", "-1s", "s", "10m1h", "20 s", "1sec"])
def test_a_duration_prometheus_would_reject_is_a_config_error(value: str) -> None:
    """A duration Prometheus cannot parse fails with one line that shows how to write one."""
    with pytest.raises(ConfigError, match=rf"alert_for '{value}' is not a Prometheus duration"):
        local_rule_groups(manifest_groups(), alert_for=value, rule_interval=None)


def test_a_bad_rule_interval_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """rule_interval is validated too, before any file is written."""
    with pytest.raises(ConfigError, match="rule_interval '1 second'"):
        write_local_rules(tmp_path / "rules.yml", MANIFEST, rule_interval="1 second")
    assert not (tmp_path / "rules.yml").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            None,
            r"rules\.yaml: cannot be read \(No such file or directory\); point --rules-manifest",
        ),
        ("spec: [\n  groups: {", r"rules\.yaml: malformed YAML at line \d+; fix the syntax"),
        ("kind: PodMonitor\nspec:\n  selector: {}\n", r"rules\.yaml: no spec\.groups"),
        ("spec:\n  groups: []\n", r"rules\.yaml: no spec\.groups"),
        ("- 1\n- 2\n", r"rules\.yaml: no spec\.groups"),
        ("spec:\n  groups:\n    - rules: []\n", r"spec\.groups\[0\] needs a name and a list"),
        ("spec:\n  groups:\n    - {name: g, rules: up}\n", r"spec\.groups\[0\] needs a name"),
    ],
    ids=["missing", "malformed", "not-a-rule", "no-groups", "a-list", "no-name", "no-rules"],
)
def test_an_unusable_manifest_is_one_config_error_naming_the_file(
    tmp_path: Path, text: str | None, message: str
) -> None:
    """A missing, malformed or group-less manifest names the file and the fix in one line."""
    path = tmp_path / "rules.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_rule_groups(path)
    assert str(path) in info.value.message
    assert "\n" not in info.value.message


def test_the_default_manifest_is_the_first_root_that_has_one(tmp_path: Path) -> None:
    """The working directory's manifest comes before the checkout's; None when neither has one."""
    mine = tmp_path / "gitops" / RULES_MANIFEST
    mine.parent.mkdir(parents=True)
    mine.write_text(MANIFEST.read_text())
    assert default_rules_manifest([tmp_path / "gitops", ROOT]) == mine.resolve()
    assert default_rules_manifest([tmp_path / "elsewhere", ROOT]) == MANIFEST.resolve()
    assert default_rules_manifest([tmp_path / "elsewhere"]) is None


# -- the stack's rules and the scrape config ---------------------------------------------------


def test_the_stack_writes_its_rule_file_with_the_requested_overrides(tmp_path: Path) -> None:
    """`up` gives Prometheus root/prometheus/rules.yml, from the manifest it was asked for."""
    request = StackRequest(
        root=tmp_path, remote="unused", env="local", rules_manifest=MANIFEST, alert_for="20s"
    )
    assert write_rules(request) == [(tmp_path / "prometheus" / "rules.yml").resolve()]
    written = json.loads((tmp_path / "prometheus" / "rules.yml").read_text())["groups"]
    assert alerts(written)["SluiceFeatureDrift"]["for"] == "20s"


def test_without_a_manifest_the_stack_loads_no_rules_and_refuses_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No manifest found: no rule file (a stale one goes); an override then says what to pass."""
    monkeypatch.setattr(stack, "default_rules_manifest", lambda: None)
    stale = tmp_path / "prometheus" / "rules.yml"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    assert write_rules(StackRequest(root=tmp_path, remote="unused", env="local")) == []
    assert not stale.exists()
    request = StackRequest(root=tmp_path, remote="unused", env="local", alert_for="20s")
    with pytest.raises(ConfigError, match=r"no rules to apply to.*pass --rules-manifest PATH"):
        write_rules(request)


def test_every_rewrite_of_the_scrape_config_keeps_the_rule_files(tmp_path: Path) -> None:
    """A target that comes or goes rewrites the config, which still names the rule files."""
    rules = write_local_rules(tmp_path / "rules.yml", MANIFEST)
    config = tmp_path / "prometheus.yml"
    scrape = PrometheusScrapeConfig(config, None, None, rule_files=[rules])
    server = ModelServerTarget("fraud-predictor-00001", "fraud", "models-local", 8081)
    for targets in (ScrapeTargets.of([8080], []), ScrapeTargets.of([8080], [server])):
        assert scrape.update(targets)
        assert json.loads(config.read_text())["rule_files"] == [str(rules.resolve())]


def test_the_runtime_passes_its_rule_files_to_every_config_it_writes(tmp_path: Path) -> None:
    """`--prometheus-rules` (repeatable) reaches the config the runtime writes on its first pass."""
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    config, state = tmp_path / "prometheus.yml", tmp_path / "state"
    argv = [
        *(sys.executable, "-m", "controller.local.runtime", "--state-dir", str(state)),
        *("--remote", str(tmp_path / "none.git"), "--env", "local"),  # its fetch fails: no matter
        *("--prometheus-config", str(config)),
        *("--prometheus-rules", str(first), "--prometheus-rules", str(second)),
    ]
    with ManagedProcess(argv, log_path=tmp_path / "runtime.log", cwd=ROOT).start() as runtime:
        runtime.wait_ready(lambda: read_json(state / RUNTIME_FILE) is not None, timeout=30)
        rule_files = json.loads(config.read_text())["rule_files"]
    assert rule_files == [str(first.resolve()), str(second.resolve())]


def test_a_runtime_keeps_its_peers_targets_in_the_config_it_writes(tmp_path: Path) -> None:
    """A stack serving two environments has a runtime each and one Prometheus config: a
    runtime named its peers (`--scrape-peer DIR`, repeatable) writes its own targets and those
    each peer last saved (none for a peer that saved nothing yet)."""
    peer, silent = tmp_path / "production", tmp_path / "qa"
    server = ModelServerTarget("fraud-predictor-00001", "fraud", "models-production", 8091)
    write_json(peer / RUNTIME_FILE, {"scrapeTargets": ScrapeTargets.of([8090], [server]).to_dict()})
    args = ["--state-dir", str(tmp_path / "staging"), "--remote", "r.git", "--env", "staging"]
    config = parse_runtime_args([*args, "--scrape-peer", str(peer), "--scrape-peer", str(silent)])
    assert config.scrape_peers == (peer, silent)
    own = ScrapeTargets.of([8080], [])
    written = tmp_path / "prometheus.yml"
    scrape = PrometheusScrapeConfig(written, None, None)
    assert scrape.update(own.union(peer_targets(config.scrape_peers)))
    jobs = {job["job_name"]: job for job in json.loads(written.read_text())["scrape_configs"]}
    routers = jobs["sluice-routers"]["static_configs"][0]["targets"]
    assert routers == ["127.0.0.1:8080", "127.0.0.1:8090"]
    (servers,) = jobs["kserve-model-servers"]["static_configs"]
    assert servers["labels"]["namespace_name"] == "models-production"
    assert not scrape.update(own.union(peer_targets(config.scrape_peers)))  # nothing changed


# -- a real Prometheus ---------------------------------------------------------------------------


def test_prometheus_loads_the_rules_with_the_overrides_and_keeps_them_on_reload(
    tmp_path: Path,
) -> None:
    """The stack's config and rule file: /api/v1/rules lists SluiceFeatureDrift waiting 20s in
    a group evaluated every second, and still does after a target change rewrites and reloads."""
    rules = write_local_rules(tmp_path / "rules.yml", MANIFEST, alert_for="20s", rule_interval="1s")
    config = tmp_path / "prometheus.yml"
    write_scrape_config(config, ScrapeTargets(), None, rule_files=[rules])
    with start_prometheus(config_file=config, data_dir=tmp_path / "data", log_dir=tmp_path) as prom:

        def drift_alert() -> tuple[dict[str, Any], dict[str, Any]]:
            groups = get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
            return next(
                (g, r) for g in groups for r in g["rules"] if r["name"] == "SluiceFeatureDrift"
            )

        group, rule = drift_alert()
        assert (rule["type"], rule["duration"], group["interval"]) == ("alerting", 20, 1)
        assert {g["name"] for g in get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]} == {
            g["name"] for g in manifest_groups()
        }

        scrape = PrometheusScrapeConfig(config, prom.url, None, rule_files=[rules])
        assert scrape.update(ScrapeTargets.of([prom.port], []))  # rewrite, then POST /-/reload
        jobs = get_json(f"{prom.url}/api/v1/status/config")["data"]["yaml"]
        assert "sluice-routers" in jobs  # the reload applied the rewritten file
        assert drift_alert()[1]["duration"] == 20
