"""Free loopback ports, for a broker of one's own (the test suite's, a benchmark's, a chaos run's).

A broker's ports are drawn below the kernel's ephemeral range: while a killed broker is down, the
outgoing connections of its clients take local ports from that range, and one of them could take
the broker's port and keep it from starting again.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from broker.cluster import HOST

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def free_port() -> int:
    """Any free port (for a server that is never restarted on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports, below the ephemeral range."""
    top = _ephemeral_start() - count
    while True:
        first = random.randrange(LOWEST, top)
        if all(_bindable(port) for port in range(first, first + count)):
            return first


def free_port_pair() -> tuple[int, int]:
    """Two free ports p, p+1 (the cluster plan puts the controller next to the client port)."""
    port = free_port_block(2)
    return port, port + 1
