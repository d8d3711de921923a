import math

import orjson
import pytest

from scorestream.contract import (Alert, ContractError, Control, DeadLetter, Features, KafkaRecord, Outcome,
                                  Rejection, Request, Result, Score)

SAMPLES = [
    Request("r1", 1_700_000_000_000, {"amount": 3.5, "nested": {"a": [1, 2]}}),
    Features("r1", 1_700_000_000_000, "txn@1", (1.0, 2.5, -3.0)),
    Score("r1", "fraud_xgb", 3, "candidate", 0.25, "w-1", 1.5e12, 1.5e12 + 0.2, "txn@1", "host-a"),
    Result("r1", 0.25, "fraud_xgb", 3, "preferred", 12.5, {"fraud_xgb@3": 0.25}, {"score": 0.2, "delta": 0.05}, 7),
    Result("r2", 0.0, None, None, "default", 100.2, {}, None, 7),
    Result("r3", None, None, None, "rejected", 8.5, {}, None, 7,
           {"stage": "extract", "reason": "payload field 'amount' is missing", "field": "payload.amount"}),
    Rejection("r3", "extract", "payload field 'amount' is missing", "payload.amount", 1_700_000_000_000),
    Rejection("r4", "extract", "Request: field 'ts' is missing", "request.ts"),
    Outcome("r1", 1, 1_700_000_000_500),
    Control("policy", "rendezvous", {"version": 7}, 1_700_000_000_000),
    Alert("score_drift", "fraud_xgb@3", 0.31, 0.2, "5m"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    record = message.to_record()
    assert type(message).from_record(record) == message
    assert isinstance(record.value, bytes)


def test_key_is_request_id():
    assert SAMPLES[0].to_record().key == b"r1"
    assert Control("policy", "rendezvous", {}, 0).to_record().key == b"policy:rendezvous"


@pytest.mark.parametrize("field", ["request_id", "ts", "payload"])
def test_missing_field_is_named(field):
    doc = {"request_id": "r1", "ts": 1, "payload": {}}
    del doc[field]
    with pytest.raises(ContractError) as exc:
        Request.from_json(orjson.dumps(doc))
    assert exc.value.field == field
    assert repr(field) in str(exc.value)


@pytest.mark.parametrize("doc,field", [
    ({"request_id": 5, "ts": 1, "payload": {}}, "request_id"),
    ({"request_id": "r", "ts": "1", "payload": {}}, "ts"),
    ({"request_id": "r", "ts": True, "payload": {}}, "ts"),
    ({"request_id": "r", "ts": 1, "payload": [1]}, "payload"),
])
def test_wrong_type_is_named(doc, field):
    with pytest.raises(ContractError) as exc:
        Request.from_dict(doc)
    assert exc.value.field == field


def test_vector_element_is_named():
    with pytest.raises(ContractError) as exc:
        Features.from_dict({"request_id": "r", "ts": 1, "extractor": "x@1", "features": [1.0, "a"]})
    assert exc.value.field == "features[1]"


def test_choices_are_enforced():
    doc = orjson.loads(SAMPLES[2].to_json())
    doc["role"] = "boss"
    with pytest.raises(ContractError, match="role"):
        Score.from_dict(doc)


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b"", None])
def test_not_an_object(value):
    with pytest.raises(ContractError):
        Request.from_record(KafkaRecord(b"k", value))


def test_extra_fields_are_ignored():
    assert Request.from_dict({"request_id": "r", "ts": 1, "payload": {}, "future": 1}) == Request("r", 1, {})


def test_ints_become_floats_where_floats_are_expected():
    f = Features.from_dict({"request_id": "r", "ts": 1, "extractor": "x@1", "features": [1, 2]})
    assert f.features == (1.0, 2.0) and all(isinstance(v, float) for v in f.features)


def test_dead_letter_round_trip_keeps_the_original():
    original = KafkaRecord(b"k", b"\x00garbage", (("trace", b"abc"),), "scoring.features", 2, 41, 1_700_000_000_000)
    dead = DeadLetter("score.fraud_xgb@3", "features: wrong width 3, expected 12", original)
    back = DeadLetter.from_record(dead.to_record())
    assert back == dead


def test_dead_letter_needs_its_headers():
    with pytest.raises(ContractError, match="error.stage"):
        DeadLetter.from_record(KafkaRecord(b"k", b"v"))


def test_nan_cannot_travel_as_json():
    assert not math.isfinite(float("nan"))
    with pytest.raises(ContractError):
        Features.from_json(b'{"request_id":"r","ts":1,"extractor":"x@1","features":[NaN]}')
