"""Prometheus conventions shared by every part.

Base units (seconds), counters end in _total, labels are few (stage, model,
version), and the SLA of 100 ms is a bucket edge so "answered within the SLA"
is read straight off a histogram.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request

from prometheus_client import Counter, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)

DEAD_LETTERED = Counter("scorestream_dead_lettered_total", "Records sent to the dead-letter topic", ["stage"])
_SERVED: set[int] = set()


def serve(port: int | None, wait: bool = False) -> None:
    """Expose /metrics on port (no-op when port is None or 0).

    On 127.0.0.1 unless SCORESTREAM_METRICS_ADDR says otherwise: a container
    sets 0.0.0.0 so Prometheus can reach it through the published port.
    wait: if the port is taken (the old version of a job during a hot swap), keep trying in the background.
    """
    if not port or port in _SERVED:       # a Flink task restarted in the same interpreter opens again
        return
    addr = os.environ.get("SCORESTREAM_METRICS_ADDR", "127.0.0.1")
    try:
        start_http_server(port, addr=addr)
        _SERVED.add(port)
    except OSError as exc:
        if not wait:
            from scorestream.errors import UserError
            raise UserError(f"cannot serve /metrics on {addr}:{port} ({exc.strerror}): stop what holds the port, "
                            f"or move the system's metrics ports with SCORESTREAM_METRICS_PORT_BASE") from None

        def retry() -> None:
            while True:
                time.sleep(0.5)
                try:
                    start_http_server(port, addr=addr)
                    _SERVED.add(port)
                    return
                except OSError:
                    continue

        _SERVED.add(port)                   # one retrying thread per port
        threading.Thread(target=retry, name="metrics-port", daemon=True).start()


def read_metric(url: str, name: str, timeout_s: float = 5.0) -> float:
    """The sum of the samples of `name` served at url (/metrics); name may carry labels: 'x_total{event="y"}'."""
    text = urllib.request.urlopen(url, timeout=timeout_s).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))
