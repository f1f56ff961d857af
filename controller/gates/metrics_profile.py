"""Which request metrics a cluster exports per revision: the names the canary checks query.

Knative's queue-proxy counts every request to a revision, but what it exports depends on the
Knative version:

``knative-otel`` (the default: Knative Serving 1.19.8+, 1.20.1+, 1.21 and later)
    OpenTelemetry's histogram ``kn_serving_invocation_duration_seconds`` (seconds, buckets
    0.005 to 10); its ``_count`` counts requests, ``http_response_status_code`` carries the
    answer's code, and the revision is named by ``k8s_namespace_name``,
    ``kn_configuration_name`` and ``kn_revision_name`` (promoted from the OTel resource by an
    OTLP receiver, or relabelled from the pod's labels by a PodMonitor).

``knative-opencensus`` (Knative Serving 1.18 and older)
    the counter ``revision_app_request_count`` and the histogram
    ``revision_app_request_latencies`` in milliseconds, labelled ``namespace_name``,
    ``configuration_name``, ``revision_name`` and ``response_code_class``.

``sluice-wrapper`` (the default of RawDeployment environments, which have no queue-proxy)
    the histogram ``sluice_request_duration_seconds`` that Sluice's serving wrapper exports
    from the model server itself, labelled ``code``; the PodMonitor puts the pod's namespace
    and revision (the ``app`` label of KServe's Deployment, ``<isvc>-predictor`` for the
    primary, ``<isvc>-<canary>-predictor`` for a ``spec.canary`` entry) on
    ``namespace_name``, ``configuration_name`` and ``revision_name``.

Anything else (Knative 1.19.0-1.19.7 and 1.20.0's ``kn_queueproxy_app_duration_seconds``, a
runtime's own metrics) is a custom profile: a :class:`MetricsProfile` with every name given.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_PROFILE",
    "KNATIVE_OPENCENSUS",
    "KNATIVE_OTEL",
    "OTEL_BUCKETS_SECONDS",
    "RAW_DEPLOYMENT_PROFILE",
    "SLUICE_WRAPPER",
    "MetricsProfile",
    "ProfileName",
    "resolve_profile",
]

#: OpenTelemetry's advised buckets for HTTP server durations, in seconds: current Knative's
#: queue-proxy histogram (kn.serving.invocation.duration) and Sluice's serving wrapper use them.
OTEL_BUCKETS_SECONDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
)  # fmt: skip
_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class MetricsProfile(BaseModel):
    """The series and labels that count a revision's requests and time them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    requests: str = Field(
        pattern=_METRIC,
        description="Counter of requests per revision (a histogram's _count works).",
    )
    latency: str = Field(
        pattern=_METRIC,
        description="Latency histogram per revision, without the _bucket suffix.",
    )
    latency_unit: Literal["seconds", "milliseconds"] = Field(
        alias="latencyUnit",
        description="Unit of the latency histogram's le bounds; checks report milliseconds.",
    )
    namespace_label: str = Field(
        alias="namespaceLabel", pattern=_LABEL, description="Label naming the namespace."
    )
    configuration_label: str = Field(
        alias="configurationLabel",
        pattern=_LABEL,
        description="Label naming the Knative configuration (<isvc>-predictor).",
    )
    revision_label: str = Field(
        alias="revisionLabel", pattern=_LABEL, description="Label naming the revision."
    )
    status_label: str = Field(
        alias="statusLabel",
        pattern=_LABEL,
        description="Label carrying the answer's status code or class.",
    )
    error_matcher: str = Field(
        alias="errorMatcher",
        min_length=1,
        description="Regular expression (PromQL =~) matching statusLabel values of server "
        'errors: "5.." for codes, "5xx" for classes.',
    )
    exported_by: Literal["queue-proxy", "model-server"] = Field(
        default="queue-proxy",
        alias="exportedBy",
        description="Who exports these series on a cluster: the queue-proxy sidecar in front "
        "of each revision (the local router stands in for it) or the model server itself "
        "(the local model servers export them).",
    )

    @field_validator("error_matcher")
    @classmethod
    def _is_a_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        if '"' in value or "\\" in value:
            raise ValueError("write the matcher without quotes or backslashes")
        return value

    def revision_selector(self, namespace: str, configuration: str, revision: str) -> str:
        """The label matchers of one revision (names must be Kubernetes object names)."""
        return (
            f'{self.namespace_label}="{namespace}", '
            f'{self.configuration_label}="{configuration}", '
            f'{self.revision_label}="{revision}"'
        )

    def errors_matcher(self) -> str:
        """The matcher of server-error answers."""
        return f'{self.status_label}=~"{self.error_matcher}"'

    def successes_matcher(self) -> str:
        """The matcher of every answer that is not a server error."""
        return f'{self.status_label}!~"{self.error_matcher}"'

    @property
    def milliseconds_per_unit(self) -> float:
        """What one unit of the latency histogram is in milliseconds."""
        return 1000.0 if self.latency_unit == "seconds" else 1.0

    def is_error(self, status: str) -> bool:
        """Whether a status label value counts as a server error (PromQL anchors =~)."""
        return re.fullmatch(self.error_matcher, status) is not None


KNATIVE_OTEL = MetricsProfile.model_validate(
    {
        "requests": "kn_serving_invocation_duration_seconds_count",
        "latency": "kn_serving_invocation_duration_seconds",
        "latencyUnit": "seconds",
        "namespaceLabel": "k8s_namespace_name",
        "configurationLabel": "kn_configuration_name",
        "revisionLabel": "kn_revision_name",
        "statusLabel": "http_response_status_code",
        "errorMatcher": "5..",
    }
)
KNATIVE_OPENCENSUS = MetricsProfile.model_validate(
    {
        "requests": "revision_app_request_count",
        "latency": "revision_app_request_latencies",
        "latencyUnit": "milliseconds",
        "namespaceLabel": "namespace_name",
        "configurationLabel": "configuration_name",
        "revisionLabel": "revision_name",
        "statusLabel": "response_code_class",
        "errorMatcher": "5xx",
    }
)
SLUICE_WRAPPER = MetricsProfile.model_validate(
    {
        "requests": "sluice_request_duration_seconds_count",
        "latency": "sluice_request_duration_seconds",
        "latencyUnit": "seconds",
        "namespaceLabel": "namespace_name",
        "configurationLabel": "configuration_name",
        "revisionLabel": "revision_name",
        "statusLabel": "code",
        "errorMatcher": "5..",
        "exportedBy": "model-server",
    }
)
ProfileName = Literal["knative-otel", "knative-opencensus", "sluice-wrapper"]
BUILTIN_PROFILES: dict[str, MetricsProfile] = {
    "knative-otel": KNATIVE_OTEL,
    "knative-opencensus": KNATIVE_OPENCENSUS,
    "sluice-wrapper": SLUICE_WRAPPER,
}
DEFAULT_PROFILE: ProfileName = "knative-otel"
#: The default of a RawDeployment environment: no queue-proxy counts its requests.
RAW_DEPLOYMENT_PROFILE: ProfileName = "sluice-wrapper"


def resolve_profile(profile: str | MetricsProfile | None) -> MetricsProfile:
    """A builtin profile by name, or a custom one as it is (None: the default)."""
    if isinstance(profile, MetricsProfile):
        return profile
    return BUILTIN_PROFILES[profile or DEFAULT_PROFILE]
