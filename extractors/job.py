"""The extract job (Flink): scoring.requests -> scoring.features with the policy's extractor.

A request that does not parse or whose payload the extractor refuses goes to
scoring.deadletter with the reason (stage `extract`); the job keeps going.
Dead letters are flushed one by one: they are rare, and a dead letter must be
safe before the source offset moves on.
"""

from __future__ import annotations

import gc

from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

from scorestream import flink, kafka
from scorestream.contract import ContractError, Features, KafkaRecord, Request
from scorestream.deadletter import DeadLetterSink
from scorestream.topics import TopicRegistry

STAGE = "extract"


class Extract(FlatMapFunction):
    def __init__(self, extractor_ref: str, bootstrap: str, source_topic: str, deadletter_topic: str):
        self.extractor_ref, self.bootstrap = extractor_ref, bootstrap
        self.source_topic, self.deadletter_topic = source_topic, deadletter_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        from extractors import get_extractor
        self.extractor = get_extractor(self.extractor_ref)
        self.dead = DeadLetterSink(kafka.producer(self.bootstrap), self.deadletter_topic, STAGE)
        gc.freeze()     # start-up objects never die: keep them out of the collector's full passes

    def flat_map(self, value: str):
        from extractors import ExtractError
        try:
            request = Request.from_json(value)
            vector = self.extractor.extract(request.payload)
        except (ContractError, ExtractError) as exc:
            self.dead.send(KafkaRecord(None, value.encode(), topic=self.source_topic), str(exc))
            self.dead.producer.flush(30)
            return
        yield Features(request.request_id, request.ts, self.extractor.ref, tuple(vector.tolist())).to_json().decode()

    def close(self) -> None:
        self.dead.producer.flush(30)


def build(env, registry: TopicRegistry, bootstrap: str, extractor_ref: str) -> None:
    requests = registry.name("requests")
    source = flink.kafka_source(requests, "scorestream.extract", bootstrap, properties=kafka.gathered_fetch(java=True))
    (env.from_source(source, WatermarkStrategy.no_watermarks(), "requests").uid("extract.source")
        .flat_map(Extract(extractor_ref, bootstrap, requests, registry.name("deadletter")), output_type=Types.STRING())
        .uid("extract").name("extract")
        .sink_to(flink.kafka_sink(registry.name("features"), bootstrap)).uid("extract.sink"))
