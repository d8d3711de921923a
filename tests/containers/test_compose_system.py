"""The compose system end to end on a real engine: every request answered once; a worker container killed
mid-stream loses nothing (its replica takes its partitions and rescores what was not committed)."""

from __future__ import annotations

import threading
import time

import orjson

from tests.readback import end_offsets


def test_answers_2000_requests_each_once(compose_system):
    compose_system.warm()
    report = compose_system.load(2000, rate=100)
    print(f"answered {report.answered}/{report.published}, rules {dict(report.by_rule)}, "
          f"p50 {report.percentile(50):.0f} ms p99 {report.percentile(99):.0f} ms")
    assert report.published == 2000
    assert (report.answered, report.duplicates) == (2000, 0)


def _values(topic: str, start: dict[int, int], stop: dict[int, int], bootstrap: str) -> list[dict]:
    from confluent_kafka import TopicPartition
    from scorestream import kafka
    c = kafka.consumer("scorestream-readback-containers", bootstrap)
    todo = {p for p in stop if stop[p] > start.get(p, 0)}
    c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
    values = []
    deadline = time.monotonic() + 60
    try:
        while todo and time.monotonic() < deadline:
            for msg in c.consume(10000, timeout=0.5):
                if msg.error() or msg.offset() >= stop[msg.partition()]:
                    continue
                values.append(orjson.loads(msg.value()))
                if msg.offset() + 1 >= stop[msg.partition()]:
                    todo.discard(msg.partition())
    finally:
        c.close()
    return values


def test_a_killed_worker_container_loses_nothing(compose_system):
    """fraud_xgb@3 runs two replicas; one is SIGKILLed in the middle of 1,500 requests. Every request
    is answered once, and every request gets a fraud_xgb@3 score on scoring.scores."""
    system = compose_system
    replicas = system.containers("worker-xgb3")
    assert len(replicas) == 2, "compose.yaml runs fraud_xgb@3 on two replicas"
    system.warm()
    requests_from, scores_from = end_offsets("scoring.requests", system.bootstrap), end_offsets("scoring.scores", system.bootstrap)
    killer = threading.Timer(6.0, lambda: replicas[0].kill())
    killer.start()
    report = system.load(1500, rate=100, drain_s=30)
    killer.join()
    assert (report.answered, report.duplicates) == (report.published, 0)
    requests = {r["request_id"] for r in _values("scoring.requests", requests_from,
                                                  end_offsets("scoring.requests", system.bootstrap), system.bootstrap)}
    deadline = time.monotonic() + 90            # session timeout, rebalance, rescoring of the uncommitted batches
    while True:
        scored = {s["request_id"] for s in _values("scoring.scores", scores_from,
                                                   end_offsets("scoring.scores", system.bootstrap), system.bootstrap)
                  if (s["model"], s["version"]) == ("fraud_xgb", 3)}
        if requests <= scored or time.monotonic() > deadline:
            break
        time.sleep(5)
    print(f"{len(requests)} requests, {len(requests & scored)} scored by fraud_xgb@3; answers {dict(report.by_rule)}")
    assert requests <= scored, f"{len(requests - scored)} requests never scored by fraud_xgb@3"
