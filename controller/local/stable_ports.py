"""Ports the local stack keeps across ``down`` and ``up``: drawn outside the ephemeral range.

``sluice local up`` remembers each component's port (MLflow, Prometheus, Alertmanager, the
status page, every InferenceService's router), so URLs stay the same after a restart. A port
asked of the kernel with ``bind(("127.0.0.1", 0))`` comes from its *ephemeral* range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default), the range it also hands
to every other program's ``bind(0)`` and outgoing connection. Once ``down`` frees such a port,
the kernel may give it to something else before ``up`` runs again, and ``up`` then finds it
taken: a test suite starting hundreds of servers saw exactly that.

So a remembered port is drawn at random from below the ephemeral range (from 10000 up),
where the kernel never allocates on its own; only a program that asks for that number by name
can take it. The draw checks that nothing listens there now; after many taken draws it falls
back to a kernel-chosen port, which works, only without that guarantee.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from controller.local.processes import free_port

__all__ = ["ephemeral_range", "stable_free_port"]

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default
_LOWEST = 10000  # below: well-known and registered services' habitual ports
_DRAWS = 64


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's ephemeral port range (``text``: that file's content; read when None)."""
    if text is None:
        try:
            text = _RANGE_FILE.read_text()
        except OSError:  # not Linux, or no /proc: the default is as good a guess as any
            return _DEFAULT_EPHEMERAL
    try:
        low, high = (int(part) for part in text.split())
    except ValueError:
        return _DEFAULT_EPHEMERAL
    return low, high


def stable_free_port(rng: random.Random | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the ephemeral range when
    there is room there (see the module notes), else one the kernel picks."""
    low, _ = ephemeral_range()
    draw = rng or random.SystemRandom()
    if low - 1 > _LOWEST:
        for _ in range(_DRAWS):
            port = draw.randint(_LOWEST, low - 1)
            if _bindable(port):
                return port
    return free_port()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
