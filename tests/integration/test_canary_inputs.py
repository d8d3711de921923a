"""The canary monitor's consumer (canary/app.py, Inputs) on the real broker: one stuck out of its group is
replaced, and its successor resumes after the records counted, none lost, none read twice."""

from __future__ import annotations

import time
import uuid

from canary.app import Inputs
from canary.monitor import CanarySettings
from scorestream import kafka
from scorestream.settings import KafkaSettings


def _send(topic: str, values: range) -> None:
    p = kafka.producer()
    for i in values:
        p.produce(topic, str(i).encode())
    assert p.flush(30) == 0


def _read_until(inputs: Inputs, seen: list[int], n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(seen) < n and time.monotonic() < deadline:
        records = inputs.take(1000)
        seen += [int(r.value()) for r in records]
        inputs.counted(records)
        time.sleep(0.05)


def test_a_consumer_stuck_out_of_its_group_is_replaced_and_its_successor_resumes_after_the_counted(registry):
    topic = registry.name("scores")
    inputs = Inputs(f"test-canary-{uuid.uuid4().hex[:8]}", KafkaSettings().bootstrap(), [topic],
                    CanarySettings(fetch_wait_ms=0))
    try:
        deadline = time.monotonic() + 60
        while inputs.membership.out_since is not None and time.monotonic() < deadline:
            inputs.take(1)          # a new group starts at the newest records: read nothing before it is assigned
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
