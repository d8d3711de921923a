"""Kafka client settings shared by every part: one place for librdkafka keys."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from scorestream import security
from scorestream.contract import KafkaRecord
from scorestream.settings import KafkaSettings


# No re-bootstrap when every broker is down (librdkafka's default since 2.10): it decommissions the brokers it
# knows, again and again through an outage, and that path has left a transactional producer waiting forever on a
# decommissioned group coordinator (librdkafka issue #5511, open in 2.16). The brokers come back at the addresses
# the client knows; it reconnects to them. (A Metadata answer listing no brokers would still make it forget them
# all: why a lone broker stops without a controlled shutdown, scorestream/broker.py.)
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}


def _base(bootstrap: str | None) -> dict[str, Any]:
    """Where Kafka is and how this client proves who it is (scorestream/security.py)."""
    props = security.client_properties()
    bootstrap = bootstrap or KafkaSettings().bootstrap()
    plaintext = props.get("security.protocol", "PLAINTEXT").upper() == "PLAINTEXT"
    return props | NO_REBOOTSTRAP | {
        "bootstrap.servers": bootstrap,
        "error_cb": functools.partial(security.raise_refusal, bootstrap=bootstrap, plaintext=plaintext, listener={})}


def admin(bootstrap: str | None = None) -> AdminClient:
    return AdminClient(_base(bootstrap))


def producer(bootstrap: str | None = None, **overrides: Any) -> Producer:
    """Idempotent, acks=all: a retried send is never written twice."""
    config = _base(bootstrap) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,                # small batches: latency matters more than a few % of throughput
        "batch.num.messages": 10000,
        "compression.type": "none",     # on loopback, the broker's CPU matters more than bytes: lz4 batches are decompressed to be validated
        "queue.buffering.max.messages": 500_000,
        "partitioner": "murmur2_random",    # a key's partition as Java's clients (the Flink jobs' sinks) choose it
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


def is_fatal(error: KafkaError) -> bool:
    """The client can no longer be used. A consumer's message or commit error carries code _FATAL with
    fatal() False (librdkafka marks the client, not the error), so both are asked."""
    return error.fatal() or error.code() == KafkaError._FATAL


def static_member_id(name: str) -> str:
    """group.instance.id of a consumer run under a stable name (a part, a container): after a broker restart,
    or its own, it takes its partitions back at once, where a dynamic member waits out its old self's session
    (measured: 2.2 s against 10.1 s after the broker's start, 10 s sessions). The topic prefix keeps sandboxes
    on one broker apart."""
    return KafkaSettings().topic_prefix + name


class GroupMembership:
    """Whether a subscribed consumer holds its place in its group: the watch behind replacing a stuck consumer.

    librdkafka can fail to rejoin for good after its group coordinator's broker restarts (seen here once in
    about six broker restarts: "session timed out ... (broker -1)", then no assignment ever again; librdkafka
    issues #2944, #3082, #3396). A consumer out of its group (subscribed, revoked or lost, no assignment since)
    for longer than limit_s is taken for stuck, and its owner replaces it: its offsets are committed only after
    the output is safe, so a new consumer resumes where it stopped."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.out_since: float | None = time.monotonic()     # subscribing is joining

    def joined(self) -> None:
        self.out_since = None

    def left(self, at: float | None = None) -> None:
        if self.out_since is None:
            self.out_since = time.monotonic() if at is None else at

    def stuck(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.out_since is not None and now - self.out_since > self.limit_s

    def out_for(self, now: float | None = None) -> float:
        return 0.0 if self.out_since is None else (time.monotonic() if now is None else now) - self.out_since


class Recoveries:
    """How often a part recovered its client from a fatal error lately: more than `limit` within `window_s` means
    something else is wrong (another member or producer with our id fences us every few seconds), and the part
    stops and says so. Counted per window, not per run: every broker restart can fence a static member once
    (its session expired in the outage, its rejoin fences its old self), and a part outlives many restarts."""

    def __init__(self, limit: int = 10, window_s: float = 600.0):
        self.limit, self.window_s = limit, window_s
        self.total = 0
        self._recent: deque[float] = deque()

    def add(self, now: float | None = None) -> bool:
        """One more recovery; True if that makes too many within the window."""
        now = time.monotonic() if now is None else now
        self.total += 1
        self._recent.append(now)
        while self._recent[0] <= now - self.window_s:
            self._recent.popleft()
        return len(self._recent) > self.limit

    def recent(self) -> int:
        return len(self._recent)


def close_within(consumer: Consumer, timeout_s: float = 10.0) -> bool:
    """Close a consumer that may be stuck, giving up after timeout_s (close() takes no timeout and waits on the
    group coordinator): False if it is still closing. A daemon thread keeps it, so it is never destroyed while
    librdkafka still uses it."""
    closer = threading.Thread(target=_close_quietly, args=(consumer,), name="consumer-close", daemon=True)
    closer.start()
    closer.join(timeout_s)
    return not closer.is_alive()


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError):
        pass


def gathered_fetch(java: bool = False, wait_ms: int | None = None, min_bytes: int = 65536) -> dict[str, Any]:
    """Consumer settings that let the broker hold a fetch up to wait_ms (KafkaSettings.fetch_wait_ms when None) to
    gather min_bytes of records (fewer, fuller fetches); librdkafka's keys, or the Java client's with java=True.
    Empty when the wait is 0."""
    wait = KafkaSettings().fetch_wait_ms if wait_ms is None else wait_ms
    if wait <= 0:
        return {}
    return {"fetch.max.wait.ms" if java else "fetch.wait.max.ms": wait, "fetch.min.bytes": min_bytes}


def produce(p: Producer, topic: str, record: KafkaRecord, on_delivery=None, partition: int = -1) -> None:
    """Produce one record, waiting for queue space instead of failing when the buffer is full; to the key's
    partition unless `partition` (-1: the partitioner's choice) is given."""
    while True:
        try:
            p.produce(topic, record.value, record.key, headers=list(record.headers) or None,
                      on_delivery=on_delivery, partition=partition)
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


def partitions(client: Consumer | Producer | AdminClient, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition numbers of `topic`, in order, from the client's metadata; [] when the cluster has no such
    topic."""
    meta = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
    return [] if meta is None or meta.error is not None else sorted(meta.partitions)


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float = 10.0) -> tuple[int, int]:
    """(low, high) offsets of a partition, retried while a new topic's leader is still taking over."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                                             KafkaError.UNKNOWN_TOPIC_OR_PART)
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def last_records(topic: str, bootstrap: str | None = None, only: list[int] | None = None,
                 timeout_s: float = 10.0) -> dict:
    """The newest record of each partition of `topic` (all, or `only` those) that has one, by partition.

    Read from a few offsets before the end: with read_committed the last offset may be a transaction marker."""
    c = consumer("scorestream.last-value", bootstrap)
    try:
        wanted = partitions(c, topic, timeout_s) if only is None else only
        ends = {p: watermarks(c, topic, p, timeout_s) for p in wanted}
        ends = {p: (low, high) for p, (low, high) in ends.items() if high > low}
        if not ends:
            return {}
        c.assign([TopicPartition(topic, p, max(low, high - 10)) for p, (low, high) in ends.items()])
        newest, todo, deadline = {}, set(ends), time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            newest[msg.partition()] = msg
            if msg.offset() >= ends[msg.partition()][1] - 1:
                todo.discard(msg.partition())
        return newest
    finally:
        c.close()


def last_value(topic: str, bootstrap: str | None = None, timeout_s: float = 10.0) -> bytes | None:
    """The value of the newest record of a one-partition topic, or None when it has none."""
    last = last_records(topic, bootstrap, [0], timeout_s).get(0)
    return None if last is None else last.value()
