"""Kafka client settings shared by every part: one place for librdkafka keys."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from scorestream.contract import KafkaRecord
from scorestream.settings import KafkaSettings


def _base(bootstrap: str | None) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap or KafkaSettings().bootstrap()}


def admin(bootstrap: str | None = None) -> AdminClient:
    return AdminClient(_base(bootstrap))


def producer(bootstrap: str | None = None, **overrides: Any) -> Producer:
    """Idempotent, acks=all: a retried send is never written twice."""
    config = _base(bootstrap) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,                # small batches: latency matters more than a few % of throughput
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
    }
    return Producer(config | overrides)


def consumer(group: str, bootstrap: str | None = None, **overrides: Any) -> Consumer:
    """Manual commits (after the output is safe), committed reads only."""
    config = _base(bootstrap) | {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    return Consumer(config | overrides)


def produce(p: Producer, topic: str, record: KafkaRecord, on_delivery=None) -> None:
    """Produce one record, waiting for queue space instead of failing when the buffer is full."""
    while True:
        try:
            p.produce(topic, record.value, record.key, headers=list(record.headers) or None,
                      on_delivery=on_delivery)
            return
        except BufferError:
            p.poll(0.05)


def consume_ready(consumer: Consumer, max_messages: int = 1000, timeout_s: float = 0.1) -> list:
    """Wait up to timeout_s for one message, then take what else is already fetched, without waiting.

    Consumer.consume(n, timeout) waits for n messages or the whole timeout, which would add
    up to timeout_s of latency to every answer read at low rates.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, timeout=0)] if max_messages > 1 else [first]
