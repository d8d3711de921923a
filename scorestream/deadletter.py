"""Sending a bad record to scoring.deadletter, with the reason, and counting it."""

from __future__ import annotations

import logging

from confluent_kafka import Producer

from scorestream import kafka
from scorestream.contract import DeadLetter, KafkaRecord
from scorestream.metrics import DEAD_LETTERED

log = logging.getLogger(__name__)


class DeadLetterSink:
    """Dead-letters records for one stage through the caller's producer.

    The caller flushes that producer before committing offsets, so a dead
    letter is as safe as any other output.
    """

    def __init__(self, producer: Producer, topic: str, stage: str):
        self.producer, self.topic, self.stage = producer, topic, stage
        self.counter = DEAD_LETTERED.labels(stage=stage)

    def send(self, record: KafkaRecord, reason: str, on_delivery=None) -> None:
        """on_delivery: the producer's delivery callback for this record (to know when it is safe)."""
        log.warning("%s: dead-lettering %s[%s]@%s: %s", self.stage, record.topic, record.partition,
                    record.offset, reason)
        kafka.produce(self.producer, self.topic, DeadLetter(self.stage, reason, record).to_record(),
                      on_delivery=on_delivery)
        self.counter.inc()
