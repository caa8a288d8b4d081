"""Free loopback ports, for a broker of one's own (the test suite's, a benchmark's)."""

from __future__ import annotations

import socket

from broker.cluster import HOST


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> tuple[int, int]:
    """Two free ports p, p+1 (the cluster plan puts the controller next to the client port)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + 1))
            except OSError:
                continue
        return port, port + 1
