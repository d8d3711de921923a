"""The worker's Prometheus metrics, labelled by model and version.

Model code never touches prometheus_client: the worker binds the labels once
(`WorkerMetrics.for_model`) and calls these children.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prometheus_client import Counter, Gauge, Histogram

from scorestream.metrics import LATENCY_BUCKETS

LABELS = ("model", "version")
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)

LATENCY = Histogram("scorestream_worker_latency_seconds",
                    "Per record: features record written (Kafka timestamp) -> its score acknowledged by the broker",
                    LABELS, buckets=LATENCY_BUCKETS)
PREDICT = Histogram("scorestream_worker_predict_seconds", "Per batch: time in the model backend",
                    LABELS, buckets=LATENCY_BUCKETS)
BATCH = Histogram("scorestream_worker_batch_seconds",
                  "Per batch: consumed -> scores acknowledged and offsets committed", LABELS, buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("scorestream_worker_batch_size", "Records per micro-batch", LABELS, buckets=BATCH_BUCKETS)
RECORDS_IN = Counter("scorestream_worker_records_in_total", "Feature records consumed", LABELS)
RECORDS_OUT = Counter("scorestream_worker_records_out_total", "Scores written and acknowledged", LABELS)
ERRORS = Counter("scorestream_worker_errors_total",
                 "Model failures on a record, delivery failures, commit failures", LABELS + ("kind",))
DEAD = Counter("scorestream_worker_dead_lettered_total", "Records sent to the dead-letter topic", LABELS)
LAG = Gauge("scorestream_worker_consumer_lag", "Records in the assigned partitions not yet consumed", LABELS)


@dataclass(frozen=True)
class WorkerMetrics:
    latency: object
    predict: object
    batch: object
    batch_size: object
    records_in: object
    records_out: object
    dead: object
    lag: object
    labels: tuple[str, str]

    @classmethod
    def for_model(cls, name: str, version: int) -> "WorkerMetrics":
        lv = (name, str(version))
        return cls(LATENCY.labels(*lv), PREDICT.labels(*lv), BATCH.labels(*lv), BATCH_SIZE.labels(*lv),
                   RECORDS_IN.labels(*lv), RECORDS_OUT.labels(*lv), DEAD.labels(*lv), LAG.labels(*lv), lv)

    def error(self, kind: str, n: int = 1) -> None:
        ERRORS.labels(*self.labels, kind).inc(n)


def observe_many(child, values: np.ndarray) -> None:
    """Histogram.observe for each value, in one pass: a batch of 1,000 records shares one acknowledgement.

    Uses prometheus_client's bucket internals (pinned version, checked by a
    unit test against observe()); falls back to the public loop if they change.
    """
    bounds, buckets, total = (getattr(child, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None:
        for v in values.tolist():
            child.observe(v)
        return
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))
