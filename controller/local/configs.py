"""Write the Prometheus config, rule and Alertmanager config files the local services run with.

Generating configs is separate from starting servers: a config is rewritten (and the server
reloaded) while the server runs, and writing one needs no running process. Files are JSON,
which is YAML, so no YAML library is needed, and are replaced by a rename so a reloading
server never reads half a file.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import ConfigError

__all__ = [
    "RETRAIN_ALERTS",
    "StaticConfig",
    "write_alertmanager_config",
    "write_prometheus_config",
    "write_rule_file",
]

# Prometheus's label name syntax; names starting with "__" are reserved for its own use.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: The alerts ``sluice serve``'s /hooks/alertmanager acts on (its ``retrain_alerts`` default).
RETRAIN_ALERTS = ("SluiceFeatureDrift", "SluicePredictionDrift")


@dataclass(frozen=True)
class StaticConfig:
    """One ``static_configs`` group: targets (``host:port``) and the labels they all carry."""

    targets: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)


def write_prometheus_config(
    path: Path,
    *,
    scrape_targets: Mapping[str, Sequence[str | StaticConfig]],
    alertmanager_url: str | None,
    rule_files: list[Path],
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> Path:
    """Write a Prometheus config: one static job per ``scrape_targets`` key.

    A job's plain ``host:port`` strings form one unlabelled group; each :class:`StaticConfig`
    is a group of its own, so its labels (``revision_name``, say) join its series to others.
    """
    jobs = [
        {"job_name": job, "static_configs": _static_configs(job, targets)}
        for job, targets in scrape_targets.items()
    ]
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": jobs,
        "rule_files": [str(rule.resolve()) for rule in rule_files],
    }
    if alertmanager_url is not None:
        parts = urllib.parse.urlsplit(alertmanager_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"alertmanager URL {alertmanager_url!r} must be http(s)://host:port")
        config["alerting"] = {
            "alertmanagers": [
                {
                    "scheme": parts.scheme,
                    "path_prefix": parts.path or "/",
                    "static_configs": [{"targets": [parts.netloc]}],
                }
            ]
        }
    # JSON is YAML, and needs no YAML library.
    _write_file(path, json.dumps(config, indent=2) + "\n", mode=0o644)
    return path


def _static_configs(job: str, targets: Sequence[str | StaticConfig]) -> list[dict[str, Any]]:
    plain = [t for t in targets if isinstance(t, str)]
    groups = [StaticConfig(tuple(plain))] if plain else []
    groups += [t for t in targets if isinstance(t, StaticConfig)]
    out = []
    for group in groups:
        for target in group.targets:
            if "/" in target or ":" not in target:
                raise ConfigError(f"scrape target {target!r} of job {job!r} must be host:port")
        for name in group.labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ConfigError(f"label {name!r} of job {job!r} is not a Prometheus label name")
        entry: dict[str, Any] = {"targets": list(group.targets)}
        if group.labels:
            entry["labels"] = dict(group.labels)
        out.append(entry)
    return out


def write_rule_file(path: Path, groups: Sequence[Mapping[str, Any]]) -> Path:
    """Write a Prometheus rule file (``groups:``) that Prometheus's ``rule_files`` can name."""
    _write_file(path, json.dumps({"groups": list(groups)}, indent=2) + "\n", mode=0o644)
    return path


def write_alertmanager_config(
    path: Path,
    *,
    webhook_url: str,
    bearer_token: str | None,
    alertnames: Sequence[str] = RETRAIN_ALERTS,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> Path:
    """Write an Alertmanager config that sends the ``alertnames`` alerts to one webhook, at once.

    Only those reach the webhook (``sluice serve``'s retrain hook), one notification per alert,
    model and environment; every other alert (a failed canary, a controller down) goes to the
    receiver ``drop``, which has no configs and so notifies nobody. The file may hold the
    bearer token, so only its owner can read it.
    """
    if not alertnames:
        raise ConfigError("the Alertmanager config needs at least one alert name to route")
    for name in alertnames:
        # A label-name-like name needs no escaping inside the matcher's regex.
        if not _LABEL_NAME.fullmatch(name):
            raise ConfigError(f"alert name {name!r} must match {_LABEL_NAME.pattern}")
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
    if bearer_token is not None:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer_token}}
    config = {
        "route": {
            "receiver": "drop",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [
                {
                    "receiver": "sluice",
                    "matchers": [f'alertname=~"{"|".join(alertnames)}"'],
                    "group_by": ["alertname", "model", "environment"],
                }
            ],
        },
        "receivers": [{"name": "drop"}, {"name": "sluice", "webhook_configs": [webhook]}],
    }
    _write_file(path, json.dumps(config, indent=2) + "\n", mode=0o600)
    return path


def _write_file(path: Path, text: str, *, mode: int) -> None:
    """Write via a rename, so a server reloading the file never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(mode)
    partial.replace(path)
