"""The cluster's alert and recording rules, as the rule file the local Prometheus loads.

On a cluster the Prometheus Operator loads ``manifests/monitoring/prometheus-rules.yaml`` (a
PrometheusRule); locally there is no operator, so ``sluice local up`` writes the manifest's
``spec.groups`` to a plain rule file, and the drift alerts fire through the real Prometheus
and Alertmanager to ``sluice serve``'s hook from the same rules a cluster runs. Only the
timing may differ: ``alert_for`` replaces the ``for:`` of every alert that has one (so a demo
waits seconds, not the cluster's 10 minutes; an alert without ``for:`` still fires at once)
and ``rule_interval`` every group's evaluation ``interval``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controller.errors import ConfigError
from controller.local.configs import write_rule_file
from controller.yaml_config import load_yaml_file

__all__ = [
    "RULES_MANIFEST",
    "default_rules_manifest",
    "load_rule_groups",
    "local_rule_groups",
    "validate_duration",
    "write_local_rules",
]

#: Where the rules live in a repository laid out as Sluice's (and in Sluice's own checkout).
RULES_MANIFEST = Path("manifests/monitoring/prometheus-rules.yaml")
#: The checkout this package runs from (an editable install); a wheel has no manifests there.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: Prometheus's duration syntax (``model.ParseDuration``): units from years to milliseconds,
#: each at most once and in this order, integers only; ``0`` alone is also a duration.
_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
_FIX = "point --rules-manifest at a PrometheusRule manifest such as " + str(RULES_MANIFEST)


def default_rules_manifest(roots: Iterable[Path] | None = None) -> Path | None:
    """The first ``roots`` entry holding :data:`RULES_MANIFEST`; None when none does.

    By default the working directory (a GitOps repository laid out as Sluice's, whose rules
    may differ from Sluice's own) comes before the checkout this package runs from.
    """
    for root in (Path.cwd(), _PACKAGE_ROOT) if roots is None else roots:
        candidate = root / RULES_MANIFEST
        if candidate.is_file():
            return candidate.resolve()
    return None


def validate_duration(value: str, *, what: str) -> str:
    """``value`` if Prometheus parses it as a duration (``20s``, ``1m30s``), else ConfigError."""
    if value != "0" and (not value or not _DURATION.fullmatch(value)):
        raise ConfigError(
            f"{what} {value!r} is not a Prometheus duration; write it as 20s, 1m30s or 10m"
        )
    return value


def load_rule_groups(manifest: Path) -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule in ``manifest``, each a named group of rules."""
    label = str(manifest)
    document = load_yaml_file(manifest, label=label, fix=_FIX)
    spec = document.get("spec") if isinstance(document, dict) else None
    groups = spec.get("groups") if isinstance(spec, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ConfigError(f"{label}: no spec.groups, so not a PrometheusRule; {_FIX}")
    for index, group in enumerate(groups):
        if not (
            isinstance(group, dict)
            and isinstance(group.get("name"), str)
            and isinstance(group.get("rules"), list)
            and all(isinstance(rule, dict) for rule in group["rules"])
        ):
            raise ConfigError(
                f"{label}: spec.groups[{index}] needs a name and a list of rules; fix the group"
            )
    return groups


def local_rule_groups(
    groups: list[dict[str, Any]], *, alert_for: str | None, rule_interval: str | None
) -> list[dict[str, Any]]:
    """A copy of ``groups`` with the ``for:`` and ``interval`` overrides that are not None."""
    if alert_for is not None:
        validate_duration(alert_for, what="alert_for")
    if rule_interval is not None:
        validate_duration(rule_interval, what="rule_interval")
    out = copy.deepcopy(groups)
    for group in out:
        if rule_interval is not None:
            group["interval"] = rule_interval
        for rule in group["rules"]:
            if alert_for is not None and "alert" in rule and "for" in rule:
                rule["for"] = alert_for
    return out


def write_local_rules(
    path: Path,
    manifest: Path,
    *,
    alert_for: str | None = None,
    rule_interval: str | None = None,
) -> Path:
    """Write the rule file at ``path`` from ``manifest``'s groups (all of them), overridden."""
    groups = local_rule_groups(
        load_rule_groups(manifest), alert_for=alert_for, rule_interval=rule_interval
    )
    return write_rule_file(path, groups)
