"""What a crashed rendezvous already answered after its restore point.

A retained checkpoint holds the state as it was when the checkpoint was taken;
the crashed run went on answering after that. The restored job replays the input
from the checkpoint's offsets, so without help it would answer those requests a
second time. The results written since the checkpoint's time (less a margin for
clocks and the checkpoint's own duration) are read up to their end, and the job
marks their request ids answered: before it starts when `scorestream up` restores
it (the restore point's time is known), and in the job itself when Flink restarts
it from its last checkpoint (answered_before_restart).
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import TopicPartition

from scorestream import kafka

MARGIN_MS = 30_000      # a checkpoint completes after it is triggered; results of the margin are merely re-marked


def answered_since(topic: str, since_ms: int, bootstrap: str | None = None, timeout_s: float = 60.0) -> set[str]:
    """Request ids of every result in `topic` written at or after since_ms - MARGIN_MS, up to the end now."""
    consumer = kafka.consumer("scorestream.recovery", bootstrap)
    try:
        partitions = kafka.partitions(consumer, topic)
        wanted = [TopicPartition(topic, p, since_ms - MARGIN_MS) for p in partitions]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        ids: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=0.5):
                if msg.error():
                    continue
                try:
                    ids.add(str(orjson.loads(msg.value())["request_id"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    pass
                if msg.offset() + 1 >= ends[msg.partition()]:
                    todo.discard(msg.partition())
        if todo:
            raise TimeoutError(f"could not read {topic} to its end in {timeout_s:.0f}s")
        return ids
    finally:
        consumer.close()


def newest_ms(topic: str, bootstrap: str | None = None) -> int | None:
    """The timestamp of the newest record of `topic` (the last of each partition), None when it is empty."""
    lasts = kafka.last_records(topic, bootstrap).values()
    return max((m.timestamp()[1] for m in lasts), default=None)


def answered_before_restart(topic: str, checkpoint_interval_ms: int, bootstrap: str | None = None) -> set[str]:
    """Request ids answered since the checkpoint a job restarted by Flink itself restores (its time is not known
    inside the job): the newest result was written before the failure (or since, by another deployment), and the
    checkpoint restored was completed at most a checkpoint interval before the failure."""
    newest = newest_ms(topic, bootstrap)
    return set() if newest is None else answered_since(topic, newest - checkpoint_interval_ms, bootstrap)
