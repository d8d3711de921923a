"""For producers: publish a request and get its answer, matched by request id.

>>> # with the stack up:
>>> # with ScoringClient() as client:
>>> #     result = client.score({"amount": 12.5, ...}, timeout=1.0)
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from scorestream import kafka
from scorestream.contract import ContractError, Request, Result
from scorestream.topics import TopicRegistry


def assigned_consumer(topic: str, bootstrap: str | None = None, from_beginning: bool = False) -> Consumer:
    """A consumer on every partition of topic, positioned now: at the start, or at the current end."""
    consumer = kafka.consumer(f"scorestream.follow.{uuid.uuid4().hex[:8]}", bootstrap)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    # explicit end offsets, not OFFSET_END: that one resolves at the first fetch and could skip a result
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING if from_beginning else
                                    kafka.watermarks(consumer, topic, p)[1]) for p in partitions])
    return consumer


def follow(consumer: Consumer, stop: threading.Event | None = None, idle_s: float | None = None) -> Iterator[Result]:
    """Results as they arrive, until stop is set or nothing came for idle_s; closes the consumer at the end.

    No consumer group is joined and nothing is committed: following is read-only.
    """
    last = time.monotonic()
    try:
        while (stop is None or not stop.is_set()) and (idle_s is None or time.monotonic() - last < idle_s):
            for msg in kafka.consume_ready(consumer, 1000, 0.1):
                if msg.error():
                    continue
                last = time.monotonic()
                try:
                    yield Result.from_json(msg.value())
                except ContractError:
                    continue
    finally:
        consumer.close()


class ScoringClient:
    """Publishes requests and resolves their results; thread-safe, one results reader in the background."""

    def __init__(self, bootstrap: str | None = None, registry: TopicRegistry | None = None):
        registry = registry or TopicRegistry.load()
        self.requests_topic = registry.name("requests")
        self.producer = kafka.producer(bootstrap, **{"linger.ms": 0})
        self.pending: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        consumer = assigned_consumer(registry.name("results"), bootstrap)
        self.reader = threading.Thread(target=self._read, args=(consumer,), daemon=True)
        self.reader.start()

    def _read(self, consumer: Consumer) -> None:
        for result in follow(consumer, self.stop):
            with self.lock:
                future = self.pending.pop(result.request_id, None)
            if future is not None:
                future.set_result(result)

    def submit(self, payload: dict[str, Any], request_id: str | None = None) -> Future:
        request = Request(request_id or uuid.uuid4().hex, int(time.time() * 1000), payload)
        future: Future = Future()
        with self.lock:
            self.pending[request.request_id] = future
        kafka.produce(self.producer, self.requests_topic, request.to_record())
        self.producer.poll(0)
        return future

    def score(self, payload: dict[str, Any], timeout: float = 1.0) -> Result:
        """The answer to one request; TimeoutError when none came within timeout seconds."""
        request_id = uuid.uuid4().hex
        future = self.submit(payload, request_id)
        try:
            return future.result(timeout)
        finally:
            with self.lock:
                self.pending.pop(request_id, None)

    def close(self) -> None:
        self.stop.set()
        self.producer.flush(10)
        self.reader.join(5)

    def __enter__(self) -> "ScoringClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
