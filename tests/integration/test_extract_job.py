"""The extract job on real Flink: features for good requests, dead letters with reasons for bad ones,
and a rejection for each bad one that names a request id."""

from __future__ import annotations

import math
import os
import random
import sys
import time
import uuid
from collections import Counter

import orjson

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


NASTY = [None, "x", -1, 0, 1e300, 1e-300, 2**64 - 1, -2**63, True, [], {}, "", 1.5]


def fuzzed_requests(seed: int, n: int) -> list[bytes]:
    """Requests bent the ways a producer can bend them (fields of any kind and size, bytes that are not JSON,
    JSON that is not a request), each a value the extract job must turn into features or a dead letter."""
    rng = random.Random(seed)
    out = []
    for i, sample in enumerate(TransactionGenerator(seed).batch(n)):
        doc = {"request_id": f"fz-{seed}-{i}", "ts": int(time.time() * 1000), "payload": dict(sample.payload)}
        kind = rng.randrange(6)
        if kind == 0:
            doc["payload"][rng.choice(sorted(doc["payload"]))] = rng.choice(NASTY)
        elif kind == 1:
            doc[rng.choice(["ts", "request_id", "payload"])] = rng.choice(NASTY)
        elif kind == 2:
            doc["payload"].update(amount=rng.choice([1e-300, 1e300]), avg_amount_30d=rng.choice([1e-300, 1e300]))
        elif kind == 3:
            doc["payload"]["distance_km"] = rng.choice([1e300, 3.5e41, 1e38])
        value = orjson.dumps(doc)
        if kind == 4:
            value = value[:rng.randrange(len(value))]                # cut short
        elif kind == 5:
            value = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(40)))
        out.append(value)
    return out


def test_fuzzed_requests_each_give_features_or_a_dead_letter_and_the_job_keeps_going(broker, registry, tmp_path):
    """300 fuzzed requests, then 20 good ones: one output each (features or a dead letter), none twice (a job
    that failed and restarted would repeat what came after its checkpoint), the good ones after all answered."""
    features = assigned_consumer(registry.name("features"), broker.bootstrap, from_beginning=True)
    dead = assigned_consumer(registry.name("deadletter"), broker.bootstrap, from_beginning=True)
    job = ManagedProcess("flink.extract", tmp_path)
    job.start([sys.executable, "-m", "scorestream.cli", "job", "extract"],
              env=os.environ | {"SCORESTREAM_TOPIC_PREFIX": registry.name("requests").removesuffix("scoring.requests")})
    try:
        producer = kafka.producer(broker.bootstrap)
        fuzzed = fuzzed_requests(random.randrange(10**6), 300)
        good = [Request(s.request_id, int(time.time() * 1000), s.payload) for s in TransactionGenerator(5).batch(20)]
        for value in fuzzed:
            kafka.produce(producer, registry.name("requests"), KafkaRecord(b"k", value))
        for r in good:
            kafka.produce(producer, registry.name("requests"), r.to_record())
        producer.flush(10)
        out_features: list[Features] = []
        deadline = time.monotonic() + 120
        letters: list = []
        while len(out_features) + len(letters) < len(fuzzed) + len(good) and time.monotonic() < deadline:
            out_features += [Features.from_json(m.value()) for m in _read(features, 1, 1)]
            letters += _read(dead, 1, 1)
        out_features += [Features.from_json(m.value()) for m in _read(features, 10**6, 3)]     # a second one?
        letters += _read(dead, 10**6, 1)
        ids = Counter(f.request_id for f in out_features)
        print(f"{len(fuzzed)} fuzzed: {len(ids) - len(good)} gave features, {len(letters)} dead letters")
        assert len(out_features) + len(letters) == len(fuzzed) + len(good)
        ours = {r.request_id for r in good}
        assert all(n == 1 for rid, n in ids.items() if rid.startswith("fz-") or rid in ours)   # ("x" may be twice)
        assert set(ids) >= {r.request_id for r in good}
        assert all(all(map(math.isfinite, f.features)) for f in out_features)
    finally:
        assert job.stop(timeout_s=30)
