"""`scorestream bench`: the system's publish->answer latency beside the bare-Kafka floor, in one run.

The floor sends the same offered load through the same number of Kafka hops
(requests -> features -> scores -> results) with trivial forwarders in place
of the extract job, the workers and the rendezvous, so the report shows what
the architecture itself adds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

from scorestream import kafka, topics
from scorestream.load import LoadReport, run_load

FLOOR_HOPS = ("requests", "features", "scores", "results")


def forward(source: str, target: str, bootstrap: str) -> None:
    """Copy every record of source to target as soon as it is read (one floor hop)."""
    consumer = kafka.consumer(f"scorestream.floor.{uuid.uuid4().hex[:8]}", bootstrap, **{"auto.offset.reset": "latest"})
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    consumer.subscribe([source])
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    while running[0]:
        for msg in kafka.consume_ready(consumer, 1000, 0.1):
            if not msg.error():
                producer.produce(target, msg.value(), msg.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


def floor(rate: float, duration_s: float, sla_ms: float, bootstrap: str) -> LoadReport:
    """The same load through bare forwarders on topics of their own."""
    registry = topics.TopicRegistry.load(prefix=f"floor{uuid.uuid4().hex[:6]}.")
    hop_registry = topics.TopicRegistry({k: registry[k] for k in FLOOR_HOPS})
    admin = kafka.admin(bootstrap)
    topics.apply(admin, hop_registry)
    names = [registry.name(k) for k in FLOOR_HOPS]
    forwarders = [subprocess.Popen([sys.executable, "-m", "scorestream.bench", src, dst, bootstrap])
                  for src, dst in zip(names, names[1:])]
    try:
        _warm_up(names[0], names[-1], bootstrap)
        return run_load(names[0], names[-1], rate, duration_s, sla_ms, bootstrap, seed=7)
    finally:
        for f in forwarders:
            f.terminate()
        for f in forwarders:
            f.wait(10)
        admin.delete_topics(names)


def _warm_up(first: str, last: str, bootstrap: str) -> None:
    """Until a request makes it through every hop: consumer groups have joined."""
    for _ in range(60):
        if run_load(first, last, rate=20, duration_s=0.5, sla_ms=1000, bootstrap=bootstrap, drain_s=1.0).answered:
            return
    raise RuntimeError("the floor forwarders never passed a request through")


if __name__ == "__main__":
    forward(*sys.argv[1:4])
