"""The extract job (Flink): scoring.requests -> scoring.features with the policy's extractor.

A request that does not parse or whose payload the extractor refuses goes to
scoring.deadletter with the reason (stage `extract`); the job keeps going.
A swap token (scorestream.swap) is not a request: it marks where a hot swap of
this job hands the partition over, and is neither extracted nor dead-lettered.
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
from typing import Any

import orjson

from pyflink.common import Types
from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

from scorestream import flink, kafka
from scorestream.contract import ContractError, Features, KafkaRecord, Rejection, Request
from scorestream.deadletter import DeadLetterSink
from scorestream.topics import TopicRegistry

STAGE = "extract"


def extract_record(extractor, value: str | None, doc) -> tuple[Request, Any]:
    """(request, features) of one record of the requests (doc: its JSON, None when it is not JSON);
    ContractError or ExtractError, the reason of its dead letter."""
    request = Request.from_dict(doc) if doc is not None else Request.from_json(value)
    return request, extractor.extract(request.payload)


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
    """Rows (value, topic, partition) of the requests -> features. extracted_by: the deployment the features
    name; predecessor: the deployment this one takes over from by a swap token."""

    def __init__(self, extractor_ref: str, bootstrap: str, source_topic: str, deadletter_topic: str,
                 rejections_topic: str, extracted_by: dict | None = None, predecessor: str | None = None):
        self.extractor_ref, self.bootstrap = extractor_ref, bootstrap
        self.source_topic, self.deadletter_topic, self.rejections_topic = source_topic, deadletter_topic, rejections_topic
        self.extracted_by, self.predecessor = extracted_by, predecessor

    def open(self, runtime_context: RuntimeContext) -> None:
        from extractors import get_extractor
        from scorestream.swap import ownership
        flink.check_loaded_code("extract", (self.extracted_by or {}).get("version"))
        self.extractor = get_extractor(self.extractor_ref)
        self.ownership = ownership("extract", (self.extracted_by or {}).get("deployment", ""), self.predecessor)
        self.dead = DeadLetterSink(kafka.producer(self.bootstrap), self.deadletter_topic, STAGE)
        for topic in (self.deadletter_topic, self.rejections_topic):    # so that the first refusal waits for nothing
            self.dead.producer.list_topics(topic, timeout=10)
        gc.freeze()     # start-up objects never die: keep them out of the collector's full passes

    def flat_map(self, row):
        from extractors import ExtractError
        value, partition = row[0], row[2]
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            doc = None                  # dead-lettered below with the reason, if this partition is ours
        if isinstance(doc, dict) and doc.get("kind") == "token":
            if doc.get("name") == "extract" and isinstance(doc.get("body"), dict):
                self.ownership.token(partition, doc["body"])
            return
        if not self.ownership.owns(partition):
            return
        try:
            request, vector = extract_record(self.extractor, value, doc)
        except Exception as exc:        # noqa: BLE001 - any other than these is an extractor's bug: the record's
            if not isinstance(exc, (ContractError, ExtractError)):      # dead letter says so, no crash loop
                exc = ExtractError("payload", f"broke {self.extractor.ref}: {type(exc).__name__}: {str(exc)[:300]}")
            self.dead.send(KafkaRecord(None, (value or "").encode("utf-8", "replace"), topic=self.source_topic,
                                       partition=partition), str(exc))
            rejection = rejection_of(value or "", exc)
            if rejection is not None:
                kafka.produce(self.dead.producer, self.rejections_topic, rejection.to_record())
            self.dead.producer.flush(30)
            return
        yield Features(request.request_id, request.ts, self.extractor.ref, tuple(vector.tolist()),
                       self.extracted_by).to_json().decode()

    def close(self) -> None:
        self.dead.producer.flush(30)


def build(env, registry: TopicRegistry, bootstrap: str, extractor_ref: str, extracted_by: dict | None = None,
          predecessor: str | None = None) -> None:
    requests = registry.name("requests")
    (flink.kafka_partitioned_source(env, "extract_requests", [requests], "scorestream.extract", bootstrap,
                                    properties=kafka.gathered_fetch(java=True))
        .flat_map(Extract(extractor_ref, bootstrap, requests, registry.name("deadletter"), registry.name("rejections"),
                          extracted_by, predecessor),
                  output_type=Types.STRING())
        .uid("extract").name("extract")
        .sink_to(flink.kafka_sink(registry.name("features"), bootstrap)).uid("extract.sink"))
