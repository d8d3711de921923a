"""Test helper: reading a topic back (which of a set of request ids arrived)."""

from __future__ import annotations

import time
import uuid
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from scorestream import kafka
from scorestream.contract import KafkaRecord


def end_offsets(topic: str, bootstrap: str | None = None) -> dict[int, int]:
    """High watermark of every partition of topic."""
    c = kafka.consumer(f"scorestream-offsets-{uuid.uuid4().hex[:8]}", bootstrap)
    try:
        return {p: kafka.watermarks(c, topic, p)[1] for p in kafka.partitions(c, topic)}
    finally:
        c.close()


def read_keys(topic: str, start: dict[int, int], bootstrap: str | None = None, timeout_s: float = 30.0) -> list[bytes]:
    """Keys of every record from `start` offsets up to the current end of each partition."""
    return [r.key for r in read_records(topic, bootstrap, start, timeout_s)]


def read_records(topic: str, bootstrap: str | None = None, start: dict[int, int] | None = None,
                 timeout_s: float = 30.0) -> list[KafkaRecord]:
    """Every record from `start` offsets (default: the beginning) up to the current end of each partition."""
    start = start or {}
    stop = end_offsets(topic, bootstrap)
    todo = {p for p in stop if stop[p] > start.get(p, 0)}
    c = kafka.consumer(f"scorestream-readback-{uuid.uuid4().hex[:8]}", bootstrap)
    c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
    records: list[KafkaRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while todo and time.monotonic() < deadline:
            for msg in c.consume(10000, timeout=0.5):
                if msg.error():
                    continue
                records.append(KafkaRecord.from_message(msg))
                if msg.offset() + 1 >= stop[msg.partition()]:
                    todo.discard(msg.partition())
    finally:
        c.close()
    return records


def count_keys(topic: str, wanted: set[str], bootstrap: str | None = None, timeout_s: float = 120.0,
               linger_s: float = 2.0) -> Counter:
    """How often each key of `topic` occurs (read committed, from the beginning), read until every wanted key
    was seen (or timeout_s), then linger_s more: a second copy would show up too."""
    c = kafka.consumer(f"scorestream-count-{uuid.uuid4().hex[:8]}", bootstrap)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in kafka.partitions(c, topic)])
    counts: Counter = Counter()
    deadline, until = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < (until or deadline):
            for msg in c.consume(10000, timeout=0.5):
                if not msg.error() and msg.key() is not None:
                    counts[msg.key().decode(errors="replace")] += 1
            if until is None and all(counts[k] for k in wanted):
                until = time.monotonic() + linger_s
    finally:
        c.close()
    return counts
