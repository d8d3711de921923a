"""The extract job (Flink): scoring.requests -> scoring.features with the policy's extractor.

A request that does not parse or whose payload the extractor refuses goes to
scoring.deadletter with the reason (stage `extract`); the job keeps going.
When it names a request id, a `Rejection` with the same reason also goes to
scoring.rejections, so that the rendezvous answers it at once as rejected.
Both are flushed one by one: they are rare, and they must be safe before the
source offset moves on.

>>> from extractors import ExtractError
>>> rejection_of('{"request_id": "r1", "ts": 5, "payload": {}}', ExtractError("amount", "is missing")).field
'payload.amount'
>>> rejection_of('{"ts": 5, "payload": {}}', ExtractError("amount", "is missing")) is None    # nobody to answer
True
"""

from __future__ import annotations

import gc

import orjson
from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

from scorestream import flink, kafka
from scorestream.contract import ContractError, Features, KafkaRecord, Rejection, Request
from scorestream.deadletter import DeadLetterSink
from scorestream.topics import TopicRegistry

STAGE = "extract"


def rejection_of(value: str, error: ValueError) -> Rejection | None:
    """The rejection of a refused request, or None when it names no request id (nobody to answer)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if not isinstance(request_id, str) or not request_id:
        return None
    ts = doc.get("ts")
    where = "request" if isinstance(error, ContractError) else "payload"
    field = error.field if error.field and error.field != where else None
    return Rejection(request_id, STAGE, str(error), f"{where}.{field}" if field else where,
                     ts if isinstance(ts, int) and not isinstance(ts, bool) else None)


class Extract(FlatMapFunction):
    def __init__(self, extractor_ref: str, bootstrap: str, source_topic: str, deadletter_topic: str,
                 rejections_topic: str):
        self.extractor_ref, self.bootstrap = extractor_ref, bootstrap
        self.source_topic, self.deadletter_topic, self.rejections_topic = source_topic, deadletter_topic, rejections_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        from extractors import get_extractor
        self.extractor = get_extractor(self.extractor_ref)
        self.dead = DeadLetterSink(kafka.producer(self.bootstrap), self.deadletter_topic, STAGE)
        for topic in (self.deadletter_topic, self.rejections_topic):    # so that the first refusal waits for nothing
            self.dead.producer.list_topics(topic, timeout=10)
        gc.freeze()     # start-up objects never die: keep them out of the collector's full passes

    def flat_map(self, value: str):
        from extractors import ExtractError
        try:
            request = Request.from_json(value)
            vector = self.extractor.extract(request.payload)
        except (ContractError, ExtractError) as exc:
            self.dead.send(KafkaRecord(None, value.encode(), topic=self.source_topic), str(exc))
            rejection = rejection_of(value, exc)
            if rejection is not None:
                kafka.produce(self.dead.producer, self.rejections_topic, rejection.to_record())
            self.dead.producer.flush(30)
            return
        yield Features(request.request_id, request.ts, self.extractor.ref, tuple(vector.tolist())).to_json().decode()

    def close(self) -> None:
        self.dead.producer.flush(30)


def build(env, registry: TopicRegistry, bootstrap: str, extractor_ref: str) -> None:
    requests = registry.name("requests")
    source = flink.kafka_source(requests, "scorestream.extract", bootstrap, properties=kafka.gathered_fetch(java=True))
    (env.from_source(source, WatermarkStrategy.no_watermarks(), "requests").uid("extract.source")
        .flat_map(Extract(extractor_ref, bootstrap, requests, registry.name("deadletter"), registry.name("rejections")),
                  output_type=Types.STRING())
        .uid("extract").name("extract")
        .sink_to(flink.kafka_sink(registry.name("features"), bootstrap)).uid("extract.sink"))
