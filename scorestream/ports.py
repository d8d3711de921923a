"""Free TCP ports on 127.0.0.1 for the servers started here (brokers, Flink REST endpoints, metrics)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(count: int = 1) -> int:
    """A port p with p .. p + count - 1 free on 127.0.0.1, below the ephemeral range: a port picked from that
    range (as binding port 0 does) can become the local end of any client's connection before its server
    binds it, seconds later for a JVM (a Flink REST endpoint refused to start so under load)."""
    low = ephemeral_range()[0]
    top = low if low - count > LOWEST else 65536
    for _ in range(200):
        port = random.randrange(LOWEST, top - count)
        try:
            for q in range(port, port + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {count} free port(s) in a row on 127.0.0.1")
