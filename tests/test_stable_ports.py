"""The ports `sluice local up` remembers come from outside the kernel's ephemeral range, so no
other program's ``bind(0)`` or outgoing connection takes one between `down` and `up`."""

from __future__ import annotations

import random
import socket

import pytest

from controller.local import stable_ports
from controller.local.stable_ports import ephemeral_range, stable_free_port


def test_the_range_is_read_from_the_kernels_file() -> None:
    assert ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert ephemeral_range("1024 65535") == (1024, 65535)
    assert ephemeral_range("garbage") == (32768, 60999)


def test_a_stable_port_is_below_the_ephemeral_range_and_free() -> None:
    low, _ = ephemeral_range()
    for _ in range(20):
        port = stable_free_port()
        assert 10000 <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing listens there


class _Draws(random.Random):
    """Draws the given ports in order."""

    def __init__(self, *ports: int) -> None:
        super().__init__()
        self.ports = list(ports)

    def randint(self, a: int, b: int) -> int:
        return self.ports.pop(0)


def test_a_port_something_listens_on_is_passed_over() -> None:
    free = stable_free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free))
        squatter.listen()
        other = stable_free_port()
        assert stable_free_port(_Draws(free, other)) == other


def test_without_room_below_the_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel whose ephemeral range starts at 1024 leaves no room: any free port will do."""
    monkeypatch.setattr(stable_ports, "ephemeral_range", lambda text=None: (1024, 65535))
    port = stable_free_port()
    assert 1024 <= port <= 65535
