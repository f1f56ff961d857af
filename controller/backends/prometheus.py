"""Prometheus as Sluice's metrics source, seen through Sluice's error tree.

The canary gates need one thing from Prometheus: the instant value of a PromQL expression now
(Flagger's metrics provider is the same two methods: run a query, say if online). What makes
this module worth having is the failure side. Prometheus answers a bad query with HTTP 400 and
a JSON error, a slow one with 503, an auth proxy in front of it with an HTML page, and a dead
server not at all; each of those becomes one :class:`~controller.errors.MetricsUnavailable`
line that names the (redacted) URL and the fix, so an analysis holds and says why rather than
failing on a traceback. The bearer token is registered with :mod:`controller.redact` and never
appears in a message.

Values are returned as Prometheus computed them: ``NaN`` (0/0, e.g. a success rate with no
requests) and ``±Inf`` stay floats, because only the gate knows whether they mean "no data".
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from typing import Any, Self

import requests

from controller.analysis_types import MetricSample, MetricSeries
from controller.errors import ConfigError, MetricsUnavailable
from controller.redact import redact, register_secret

__all__ = ["PrometheusSource"]

_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
# Prometheus prefixes parse errors with the parameter they came in; the user wrote the query.
_PARAMETER_PREFIX = re.compile(r'^invalid parameter "query":\s*')
_ONLINE_QUERY = "vector(1)"


class PrometheusSource:
    """The :class:`~controller.ports.MetricsSource` for Prometheus's HTTP API (``/api/v1/query``).

    ``url`` is where the API lives, with any path prefix (``http://prometheus:9090``,
    ``https://example.org/prometheus``). ``trust_env`` decides whether proxy variables
    (``HTTPS_PROXY``…) and ``.netrc`` apply; by default they do, except for loopback hosts,
    where a proxy is never what a user means. Works with anything that serves the Prometheus
    query API (Thanos Query, Mimir, VictoriaMetrics).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        bearer_token: str | None = None,
        trust_env: bool | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"Prometheus URL {redact(url)!r} must be http(s)://HOST[:PORT][/PATH]; fix the URL"
            )
        if timeout_seconds <= 0:
            raise ConfigError(f"Prometheus timeout {timeout_seconds:g} s must be positive")
        register_secret(bearer_token)
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._session = requests.Session()
        self._session.trust_env = (
            trust_env if trust_env is not None else not _is_loopback(parts.hostname)
        )
        self._session.headers["Accept"] = "application/json"
        if bearer_token:
            self._session.headers["Authorization"] = f"Bearer {bearer_token}"

    def __repr__(self) -> str:
        return f"PrometheusSource({redact(self.url)!r})"

    # -- MetricsSource -------------------------------------------------------------------------

    def query(self, promql: str) -> list[MetricSample]:
        """Evaluate ``promql`` as an instant query now.

        An instant vector becomes one sample per series, a scalar one sample with empty labels.
        An empty list means "no series matched"; every failure is a one-line
        :class:`MetricsUnavailable`.
        """
        # POST keeps long templated queries out of URL length limits and access logs.
        form = {"query": promql, "timeout": f"{self.timeout_seconds:g}s"}
        response = self._send("POST", "/api/v1/query", data=form)
        body = self._json(response)
        if response.status_code >= 300 or body.get("status") != "success":
            raise self._error_from(response, body)
        return _samples(body.get("data"), where=self._where, promql=promql)

    def query_range(
        self, promql: str, *, start: float, end: float, step: float
    ) -> list[MetricSeries]:
        """Evaluate ``promql`` every ``step`` seconds from ``start`` to ``end`` (epoch seconds),
        as the charts of the status page do: one :class:`MetricSeries` per series, values as
        Prometheus computed them (NaN kept). Failures are :class:`MetricsUnavailable`, as for
        :meth:`query`."""
        if not (end >= start and step > 0):
            raise ConfigError(f"range query from {start} to {end} every {step} s is empty")
        form = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
            "timeout": f"{self.timeout_seconds:g}s",
        }
        response = self._send("POST", "/api/v1/query_range", data=form)
        body = self._json(response)
        if response.status_code >= 300 or body.get("status") != "success":
            raise self._error_from(response, body)
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise MetricsUnavailable(f"{self._where} answered a range query without a matrix")
        return [
            MetricSeries(
                labels={str(k): str(v) for k, v in element.get("metric", {}).items()},
                points=tuple((float(t), _float(v)) for t, v in element.get("values", [])),
            )
            for element in data.get("result") or []
            if isinstance(element, dict)
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    def is_online(self) -> bool:
        """Say whether Prometheus is ready to answer queries (``GET /-/ready``).

        Query APIs without that endpoint (Mimir, some proxies) answer 404; for those, a
        ``vector(1)`` query decides. Never raises.
        """
        try:
            response = self._send("GET", "/-/ready")
            if response.status_code == 404:
                return [s.value for s in self.query(_ONLINE_QUERY)] == [1.0]
        except MetricsUnavailable:
            return False
        return response.status_code == 200

    def close(self) -> None:
        """Close pooled connections (idempotent)."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"Prometheus at {redact(self.url)}"

    @property
    def _runs_fix(self) -> str:
        return f"check that Prometheus runs at {redact(self.url)}"

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(
                method,
                self.url + path,
                timeout=self.timeout_seconds,
                allow_redirects=False,
                **kwargs,
            )
        except requests.Timeout:
            raise MetricsUnavailable(
                f"{self._where} did not answer within {self.timeout_seconds:g} s; "
                f"{self._runs_fix} and is not overloaded"
            ) from None
        except requests.RequestException as exc:
            raise MetricsUnavailable(
                f"{self._where} is unreachable ({_reason(exc)}); {self._runs_fix}"
            ) from None

    def _json(self, response: requests.Response) -> dict[str, Any]:
        """The API's JSON object; an empty dict for an error page, a failure for a 2xx one."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        if response.status_code < 300:
            kind = response.headers.get("Content-Type", "no content type")
            raise MetricsUnavailable(
                f"{self._where} answered HTTP {response.status_code} with {kind}, not the "
                f"query API's JSON; check that the URL points at Prometheus (without /api/v1)"
            )
        return {}

    def _error_from(self, response: requests.Response, body: dict[str, Any]) -> MetricsUnavailable:
        status = response.status_code
        error_type = str(body.get("errorType", ""))
        error = redact(_PARAMETER_PREFIX.sub("", str(body.get("error", ""))))
        if error_type == "bad_data" or status == 400:
            return MetricsUnavailable(f"{self._where} rejected the query; fix the query: {error}")
        if error_type in ("timeout", "canceled"):
            return MetricsUnavailable(
                f"{self._where} gave up on the query ({error_type}: {error}); make the query "
                f"cheaper or raise Prometheus's --query.timeout"
            )
        if error_type == "execution" or status == 422:
            return MetricsUnavailable(
                f"{self._where} could not evaluate the query; fix the query: {error}"
            )
        if status in (401, 403):
            return MetricsUnavailable(
                f"{self._where} refused the request (HTTP {status}); check the bearer token"
            )
        if status == 404:
            return MetricsUnavailable(
                f"{self._where} has no query API (HTTP 404); check that the URL points at "
                f"Prometheus (without /api/v1)"
            )
        if 300 <= status < 400:
            location = redact(response.headers.get("Location", "elsewhere"))
            return MetricsUnavailable(
                f"{self._where} redirects to {location} (HTTP {status}); use that URL instead"
            )
        detail = f" ({error_type}: {error})" if error else ""
        return MetricsUnavailable(
            f"{self._where} answered HTTP {status}{detail}; {self._runs_fix} and is healthy"
        )


def _samples(data: Any, *, where: str, promql: str) -> list[MetricSample]:
    if not isinstance(data, dict):
        raise MetricsUnavailable(f"{where} answered without data; check the URL")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [MetricSample(labels={}, value=_float(result[1]))]
    if kind != "vector" or not isinstance(result, list):
        query = " ".join(promql.split())
        raise MetricsUnavailable(
            f"{where} answered a {kind} for {query!r}; fix the query: it must return an instant "
            f"vector or a scalar (aggregate a range with rate(), increase() or *_over_time())"
        )
    samples = []
    for element in result:
        if "value" not in element:  # a native histogram: {"metric": ..., "histogram": ...}
            raise MetricsUnavailable(
                f"{where} answered native histograms; fix the query: wrap them in "
                f"histogram_quantile(), histogram_count() or histogram_sum()"
            )
        labels = {str(k): str(v) for k, v in element.get("metric", {}).items()}
        samples.append(MetricSample(labels=labels, value=_float(element["value"][1])))
    return samples


def _float(text: Any) -> float:
    """Prometheus's sample value: a string, with ``NaN``, ``+Inf`` and ``-Inf`` spelled out."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _reason(exc: requests.RequestException) -> str:
    """The root cause (``Connection refused``) without urllib3's pool and retry wrapping."""
    match = _ERRNO_TEXT.search(str(exc))
    if match:
        return match.group(1).strip().rstrip(".").lower()
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
