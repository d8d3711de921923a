"""The extract job on real Flink: features for good requests, dead letters with reasons for bad ones,
and a rejection for each bad one that names a request id."""

from __future__ import annotations

import os
import sys
import time
import uuid

from scorestream import kafka
from scorestream.client import assigned_consumer
from scorestream.contract import DeadLetter, Features, KafkaRecord, Rejection, Request
from scorestream.process import ManagedProcess
from scorestream.synthetic import TransactionGenerator


def _read(consumer, want: int, timeout_s: float) -> list:
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += [m for m in kafka.consume_ready(consumer, 1000, 0.2) if not m.error()]
    return out


def test_features_and_dead_letters(broker, registry, tmp_path):
    features = assigned_consumer(registry.name("features"), broker.bootstrap, from_beginning=True)
    dead = assigned_consumer(registry.name("deadletter"), broker.bootstrap, from_beginning=True)
    rejections = assigned_consumer(registry.name("rejections"), broker.bootstrap, from_beginning=True)
    job = ManagedProcess("flink.extract", tmp_path)
    job.start([sys.executable, "-m", "scorestream.cli", "job", "extract"],
              env=os.environ | {"SCORESTREAM_TOPIC_PREFIX": registry.name("requests").removesuffix("scoring.requests")})
    try:
        producer = kafka.producer(broker.bootstrap)
        good = [Request(s.request_id, int(time.time() * 1000), s.payload) for s in TransactionGenerator(4).batch(100)]
        for r in good:
            kafka.produce(producer, registry.name("requests"), r.to_record())
        bad_payload = dict(good[0].payload, amount="lots")
        bad_id = f"bad-{uuid.uuid4().hex[:6]}"
        bad = {b"not json": "not JSON",
               b'{"request_id": "no-ts", "payload": {}}': "'ts' is missing",
               Request(bad_id, 1, bad_payload).to_json(): "'amount' must be a number"}
        for value in bad:
            kafka.produce(producer, registry.name("requests"), KafkaRecord(b"k", value))
        producer.flush(10)

        got = [Features.from_json(m.value()) for m in _read(features, len(good), 120)]
        assert sorted(f.request_id for f in got) == sorted(r.request_id for r in good)
        assert {f.extractor for f in got} == {"txn@1"} and {len(f.features) for f in got} == {20}

        letters = [DeadLetter.from_record(KafkaRecord.from_message(m)) for m in _read(dead, len(bad), 30)]
        assert {d.record.value: d.stage for d in letters} == {value: "extract" for value in bad}
        for d in letters:
            assert bad[d.record.value] in d.reason
            assert d.record.topic == registry.name("requests")

        refused = [Rejection.from_json(m.value()) for m in _read(rejections, 2, 30)]      # "not json" names nobody
        assert {(r.request_id, r.field, r.ts) for r in refused} == {("no-ts", "request.ts", None),
                                                                    (bad_id, "payload.amount", 1)}
        reasons = {d.record.value: d.reason for d in letters}
        assert {r.reason for r in refused} == {reasons[v] for v in bad if v != b"not json"}
        assert all(r.stage == "extract" for r in refused)
    finally:
        assert job.stop(timeout_s=30)
