"""PromQL as the metric checks write it: strict ``{{ variable }}`` templates, the builtin
checks' queries, the revision selector and Prometheus durations.

Object names go into PromQL strings unescaped, so anything that is not a Kubernetes object name
is refused before it gets there (see :mod:`controller.gates.prometheus_checks` for the queries'
meaning).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from controller.errors import ConfigError
from controller.gates.graph_branches import GraphBranches, branch_metric_names
from controller.gates.graph_traffic import GraphTraffic, step_metric_names
from controller.gates.metrics_profile import DEFAULT_PROFILE, MetricsProfile, resolve_profile

__all__ = [
    "DEFAULT_METRICS_PROFILE",
    "DURATION_PATTERN",
    "TEMPLATE_VARIABLES",
    "RequestSeries",
    "builtin_query",
    "duration_seconds",
    "render_query",
    "request_series",
    "require_object_names",
    "revision_selector",
    "template_variables",
]

#: The variables a check's ``query`` template may use, as ``{{ name }}``.
TEMPLATE_VARIABLES = (
    "namespace",
    "configuration",
    "inference_service",
    "canary_revision",
    "primary_revision",
    "revision",
    "interval",
)
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VARIABLE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
#: A Prometheus duration such as ``1m30s``.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
# Kubernetes object names: safe inside a PromQL string without escaping.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DEFAULT_METRICS_PROFILE = resolve_profile(DEFAULT_PROFILE)
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """A Prometheus duration (``1m30s``) in seconds."""
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def template_variables(template: str, *, check: str) -> set[str]:
    """The variables ``template`` uses; :class:`ConfigError` for anything else in ``{{ }}``."""
    used = set()
    for match in _PLACEHOLDER.finditer(template):
        variable = _VARIABLE.match(match.group(1))
        if variable is None:
            raise ConfigError(
                f"check {check}: {match.group(0)!r} in its query is not a variable; "
                f"write {{{{ name }}}} with one of {', '.join(TEMPLATE_VARIABLES)}"
            )
        name = variable.group(1)
        if name not in TEMPLATE_VARIABLES:
            raise ConfigError(
                f"check {check}: unknown variable {name!r} in its query; "
                f"use one of {', '.join(TEMPLATE_VARIABLES)}"
            )
        used.add(name)
    if "{{" in _PLACEHOLDER.sub("", template):
        raise ConfigError(f"check {check}: its query opens '{{{{' without closing it; add '}}}}'")
    return used


def render_query(template: str, variables: Mapping[str, str], *, check: str) -> str:
    """``template`` with every ``{{ name }}`` replaced from ``variables``.

    An unknown variable, or a known one without a value in ``variables``, is a
    :class:`ConfigError` naming ``check`` and the variable; nothing is left unrendered.
    """
    for name in sorted(template_variables(template, check=check)):
        if name not in variables:
            raise ConfigError(
                f"check {check}: its query uses {{{{ {name} }}}}, which has no value here"
            )
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1).strip()], template)


def builtin_query(
    builtin: str,
    *,
    namespace: str,
    configuration: str,
    revision: str,
    interval: str,
    percentile: float = 99.0,
    profile: MetricsProfile = DEFAULT_METRICS_PROFILE,
    graph: GraphTraffic | GraphBranches | None = None,
    inference_service: str = "",
) -> str:
    """The PromQL of a builtin check for one revision (see the module docstring); with
    ``graph``, of the revision's answers to the graph's calls to ``inference_service``; with
    :class:`GraphBranches`, of one branch of a graph canary (``revision`` names it)."""
    series = request_series(
        profile,
        namespace=namespace,
        configuration=configuration,
        revision=revision,
        graph=graph,
        inference_service=inference_service,
    )
    selector, requests = series.selector, series.requests
    if builtin == "request-success-rate":
        succeeded = f"{requests}{{{selector}, {profile.successes_matcher()}}}"
        return (
            f"(sum(rate({succeeded}[{interval}])) or vector(0))"
            f" / sum(rate({requests}{{{selector}}}[{interval}])) * 100"
        )
    if builtin == "request-latency":
        buckets = f"sum by (le)(rate({series.latency}_bucket{{{selector}}}[{interval}]))"
        quantile = f"histogram_quantile({percentile / 100:g}, {buckets})"
        scale = profile.milliseconds_per_unit
        return quantile if scale == 1 else f"{quantile} * {scale:g}"
    raise ConfigError(f"unknown builtin check {builtin!r}; use request-success-rate or ...-latency")


@dataclass(frozen=True)
class RequestSeries:
    """Where one revision's requests are counted and timed: the request counter, the latency
    histogram (without ``_bucket``) and the label matchers that pick the revision out."""

    requests: str
    latency: str
    selector: str


def request_series(
    profile: MetricsProfile,
    *,
    namespace: str,
    configuration: str,
    revision: str,
    graph: GraphTraffic | GraphBranches | None = None,
    inference_service: str = "",
) -> RequestSeries:
    """The series of ``revision``: its own (the profile's names and revision selector) or,
    with ``graph``, the graph's step series of its calls to ``inference_service`` that
    ``revision`` answered (:mod:`controller.gates.graph_traffic`), or, with
    :class:`GraphBranches`, the answers of the graph canary's branch ``revision`` (``canary``
    or ``stable``, :mod:`controller.gates.graph_branches`). Names are checked first."""
    if isinstance(graph, GraphBranches):
        require_object_names(namespace=namespace)
        branches = branch_metric_names(profile)
        selector = f'{profile.namespace_label}="{namespace}", {graph.matchers(revision)}'
        return RequestSeries(branches.requests, branches.latency, selector)
    if graph is None:
        selector = revision_selector(profile, namespace, configuration, revision)
        return RequestSeries(profile.requests, profile.latency, selector)
    require_object_names(
        namespace=namespace, inference_service=inference_service, revision=revision
    )
    names = step_metric_names(profile)
    selector = (
        f'{profile.namespace_label}="{namespace}", {graph.matchers(inference_service)}, '
        f'{profile.revision_label}="{revision}"'
    )
    return RequestSeries(names.requests, names.latency, selector)


def require_object_names(**names: str) -> None:
    """Kubernetes names need no escaping inside PromQL strings; anything else is refused."""
    for what, value in names.items():
        if not _OBJECT_NAME.match(value):
            raise ConfigError(
                f"{what} {value!r} is not a Kubernetes object name "
                f"(lowercase letters, digits, '-' and '.')"
            )


def revision_selector(
    profile: MetricsProfile, namespace: str, configuration: str, revision: str
) -> str:
    """The profile's label matchers of one revision, its names checked first."""
    require_object_names(namespace=namespace, configuration=configuration, revision=revision)
    return profile.revision_selector(namespace, configuration, revision)
