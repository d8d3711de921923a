"""The canary monitor's consumer (canary/app.py, Inputs) on the real broker: one stuck out of its group is
replaced, and its successor resumes after the records counted, none lost, none read twice."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import TopicPartition

from canary.app import Inputs
from canary.monitor import CanarySettings
from scorestream import kafka
from scorestream.settings import KafkaSettings


def _send(topic: str, values: range) -> None:
    p = kafka.producer()
    for i in values:
        p.produce(topic, str(i).encode())
    assert p.flush(30) == 0


def _start_at_end(group: str, topic: str) -> None:
    """The group's offsets committed at the topic's end. Its consumer then starts there: a new group's reset to
    "latest" is looked up after the assignment, and records sent in between would be skipped (seen in CI)."""
    c = kafka.consumer(group)
    try:
        partitions = kafka.partitions(c, topic)
        ends = [TopicPartition(topic, p, kafka.watermarks(c, topic, p)[1]) for p in partitions]
        c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()


def _read_until(inputs: Inputs, seen: list[int], n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(seen) < n and time.monotonic() < deadline:
        records = inputs.take(1000)
        seen += [int(r.value()) for r in records]
        inputs.counted(records)
        time.sleep(0.05)


def test_a_consumer_stuck_out_of_its_group_is_replaced_and_its_successor_resumes_after_the_counted(registry):
    topic, group = registry.name("scores"), f"test-canary-{uuid.uuid4().hex[:8]}"
    _start_at_end(group, topic)
    inputs = Inputs(group, KafkaSettings().bootstrap(), [topic], CanarySettings(fetch_wait_ms=0))
    try:
        deadline = time.monotonic() + 60
        while inputs.membership.out_since is not None and time.monotonic() < deadline:
            assert inputs.take(1) == []
            time.sleep(0.05)
        assert inputs.membership.out_since is None, "never assigned"
        seen: list[int] = []
        _send(topic, range(0, 500))
        _read_until(inputs, seen, 500)
        inputs.membership.left(at=time.monotonic() - 3600)      # the watch's verdict; the replacement is real
        _send(topic, range(500, 1000))
        _read_until(inputs, seen, 1000)
        assert inputs.replacements == 1
        assert sorted(seen) == list(range(1000))
    finally:
        inputs.close()
