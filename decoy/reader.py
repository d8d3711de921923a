"""Reading a time range of a topic back, as read_committed readers see it.

Timestamps inside a partition are not strictly ordered (producers' clocks,
retries), so the end offset is looked up `late_ms` after the range's end and
every record is checked against the range: a straggler written up to late_ms
after the end of the range is still found; the start bound needs no slack
(offsets_for_times gives the first record at or after the start).
"""

from __future__ import annotations

import time
import uuid
from typing import Iterator

from confluent_kafka import KafkaError, TopicPartition

from decoy.timerange import TimeRange, offset_ranges
from scorestream import kafka
from scorestream.errors import UserError


class RangeReader:
    def __init__(self, topic: str, time_range: TimeRange, late_ms: int = 10_000, bootstrap: str | None = None):
        self.topic, self.range = topic, time_range
        # A private group that never commits: replay leaves no trace on the cluster.
        self.consumer = kafka.consumer(f"scorestream.replay.{uuid.uuid4().hex[:12]}", bootstrap,
                                       **{"enable.partition.eof": True, "fetch.wait.max.ms": 100,
                                          "max.partition.fetch.bytes": 8 << 20})   # big fetches: reading history
        self.ranges = self._offsets(late_ms)

    @property
    def upper_bound(self) -> int:
        """Records to read at most (transaction markers and aborted records make the real count lower)."""
        return sum(end - start for start, end in self.ranges.values())

    def _offsets(self, late_ms: int) -> dict[int, tuple[int, int]]:
        parts = kafka.partitions(self.consumer, self.topic)
        if not parts:
            raise UserError(f"topic {self.topic} does not exist on this cluster")

        def lookup(ts: int) -> dict[int, int]:
            found = self.consumer.offsets_for_times([TopicPartition(self.topic, p, ts) for p in parts], timeout=30)
            return {tp.partition: tp.offset for tp in found}

        high = {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1] for p in parts}
        return offset_ranges(lookup(self.range.start_ms), lookup(self.range.end_ms + late_ms), high)

    def __iter__(self) -> Iterator:
        """confluent_kafka Messages of the range, partition by partition in offset order."""
        ends = {p: end for p, (_, end) in self.ranges.items()}
        self.consumer.assign([TopicPartition(self.topic, p, start) for p, (start, _) in self.ranges.items()])
        todo, last_progress = set(ends), time.monotonic()

        def done(p: int) -> None:
            todo.discard(p)
            self.consumer.pause([TopicPartition(self.topic, p)])   # stop fetching what we will not read
        try:
            while todo:
                msgs = self.consumer.consume(10_000, 0.1)   # returns early only when full: keep short
                if msgs:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > 60:
                    raise UserError(f"{self.topic}: no progress for 60 s on partitions {sorted(todo)}")
                for m in msgs:
                    p = m.partition()
                    if p not in todo:
                        continue
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:   # the last stable offset
                            done(p)
                            continue
                        raise UserError(f"{self.topic}[{p}]: {m.error()}")
                    if m.offset() >= ends[p]:
                        done(p)
                        continue
                    if m.offset() == ends[p] - 1:
                        done(p)
                    if self.range.contains(m.timestamp()[1]):
                        yield m
        finally:
            self.consumer.close()
