"""The header that marks a request as synthetic: answered and counted, but not live traffic.

Sluice's load test (``loadtests/locustfile.py``) replays a handful of example rows before each
canary step. Its requests are real requests to the router, which counts them in the metrics
the canary gates read, but they are not the traffic the model serves: in the model server's
drift window (:mod:`controller.local.serving.monitor`) a few rows repeated thousands of times
look like massive drift. So every request of the load test carries
``X-Sluice-Synthetic: load-test``, and the model server leaves a request with this header out
of its drift window. A team's own probes may send it too, with any value.

The locustfile keeps its own copy of the name, because it must not import the controller (see
its docstring); ``tests/test_locust_load.py`` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LOAD_TEST", "SYNTHETIC_HEADER", "is_synthetic"]

#: The header's name; HTTP header names are case-insensitive, so any spelling of it counts.
SYNTHETIC_HEADER = "X-Sluice-Synthetic"
#: The value Sluice's load test sends.
LOAD_TEST = "load-test"

_LOWERED = SYNTHETIC_HEADER.lower()


def is_synthetic(headers: Mapping[str, str] | None) -> bool:
    """Whether ``headers`` carry :data:`SYNTHETIC_HEADER` with a non-empty value.

    The name is compared in any letter case: kserve hands ``predict`` starlette's lower-cased
    names, while a client or a test may spell it as written here.
    """
    if not headers:
        return False
    return any(name.lower() == _LOWERED and value.strip() for name, value in headers.items())
