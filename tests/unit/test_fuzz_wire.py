"""Fuzzed records on the wire: every reader gives a complete message or a clear error, never anything else.

Arbitrary bytes, arbitrary JSON and near-valid documents (the right fields, sometimes the wrong kind of value)
through the contract, the dead-letter and archive headers, the lines of `publish` and `outcomes`, the
rendezvous's and the workers' parsers, and the client's local check.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoy.record import _OURS, ArchivedRequest
from extractors import get_extractor
from models.core import score_batch
from rendezvous.job import parse as rendezvous_parse
from scorestream.client import RequestRejected, check_request
from scorestream.contract import (H_ERROR_REASON, H_ERROR_STAGE, H_SOURCE_OFFSET, H_SOURCE_PARTITION,
                                  H_SOURCE_TIMESTAMP, H_SOURCE_TOPIC, Alert, Control, ContractError, DeadLetter,
                                  Features, KafkaRecord, Outcome, Rejection, Request, Result, Score)
from scorestream.publish import parse_line, parse_outcome_line
from tests.fuzzing import documents, fuzz, json_float, json_int, json_value, payloads, python_value
from tests.unit.test_worker_core import STAMP, FakeModel

pytestmark = pytest.mark.timeout(120)      # a hang fails the test instead of holding `make test`

ident = st.text(max_size=12)
MESSAGE_FIELDS = {
    Request: {"request_id": ident, "ts": json_int, "payload": payloads},
    Features: {"request_id": ident, "ts": json_int, "extractor": st.just("txn@1"),
               "features": st.lists(json_float | json_int, max_size=22)},
    Score: {"request_id": ident, "model": ident, "version": json_int, "role": st.sampled_from(["candidate", "canary"]),
            "score": json_float, "worker": ident, "received_at": json_float, "scored_at": json_float,
            "extractor": ident},
    Rejection: {"request_id": ident, "stage": ident, "reason": ident, "field": ident, "ts": json_int},
    Result: {"request_id": ident, "score": json_float, "model": ident, "version": json_int, "rule": ident,
             "latency_ms": json_float, "candidates": st.dictionaries(ident, json_float, max_size=3),
             "canary": st.none(), "policy_version": json_int},
    Outcome: {"request_id": ident, "label": st.sampled_from([0, 1, 2, True]), "ts": json_int},
    Control: {"kind": st.sampled_from(["policy", "token", "deployment"]), "name": ident,
              "body": st.dictionaries(ident, json_value, max_size=3), "ts": json_int},
    Alert: {"alert": ident, "model": ident, "value": json_float, "threshold": json_float, "window": ident,
            "state": st.sampled_from(["firing", "resolved"])},
}
wire_values = st.one_of(st.binary(max_size=300), json_value.map(orjson.dumps),
                        *(documents(fields).map(orjson.dumps) for fields in MESSAGE_FIELDS.values()))


@fuzz(400)
@given(kind=st.sampled_from(sorted(MESSAGE_FIELDS, key=lambda c: c.__name__)), value=st.none() | wire_values)
def test_contract_gives_a_complete_message_or_a_contract_error(kind, value):
    try:
        message = kind.from_json(value)
    except ContractError as exc:
        assert str(exc).startswith(f"{kind.__name__}: ")
        return
    assert kind.from_json(message.to_json()) == message      # what was accepted goes back on the wire as it came
    assert isinstance(message.key, bytes)


header_names = st.sampled_from([H_ERROR_STAGE, H_ERROR_REASON, H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET,
                                H_SOURCE_TIMESTAMP, "archived_at", "trace"])
header_values = st.binary(max_size=12) | st.integers(-5, 10**12).map(lambda i: b"%d" % i) | st.just(b"\xff\xfe")
headers = st.lists(st.tuples(header_names, header_values), max_size=8).map(tuple)


@fuzz(500)
@given(key=st.none() | st.binary(max_size=8), value=st.none() | st.binary(max_size=30), headers=headers)
def test_dead_letter_headers_give_a_dead_letter_or_a_contract_error(key, value, headers):
    try:
        dead = DeadLetter.from_record(KafkaRecord(key, value, headers))
    except ContractError:
        return
    assert DeadLetter.from_record(dead.to_record()) == dead


archive_tails = st.lists(header_values | st.none(), min_size=5, max_size=5).map(lambda vs: tuple(zip(_OURS, vs)))


@fuzz(300)
@given(value=st.none() | st.binary(max_size=30), first=headers, tail=st.none() | archive_tails)
def test_archive_headers_give_the_original_or_a_contract_error(value, first, tail):
    record = KafkaRecord(b"k", value, first + (tail or ()))
    try:
        archived = ArchivedRequest.from_record(record)
    except ContractError:
        return
    assert ArchivedRequest.from_record(archived.to_record()) == archived


lines = st.one_of(st.binary(max_size=200), st.text(max_size=100), json_value.map(orjson.dumps),
                  payloads.map(orjson.dumps), documents({"request_id": ident, "ts": json_int, "payload": payloads})
                  .map(orjson.dumps))


@fuzz(300)
@given(line=lines)
def test_publish_lines_give_a_request_or_a_contract_error(line):
    try:
        request = parse_line(line, 1_700_000_000_000)
    except ContractError:
        return
    assert Request.from_json(request.to_json()) == request


@fuzz(250)
@given(line=lines | documents(MESSAGE_FIELDS[Outcome]).map(orjson.dumps))
def test_outcome_lines_give_an_outcome_or_a_contract_error(line):
    try:
        outcome = parse_outcome_line(line, 1_700_000_000_000)
    except ContractError:
        return
    assert outcome.label in (0, 1) and type(outcome.label) is int


@fuzz(400)
@given(value=wire_values.map(lambda b: b.decode("utf-8", "replace")))
def test_rendezvous_reads_every_record_as_an_event_or_none(value):
    """The rendezvous's one parser of requests, scores, rejections, outcomes and tokens: an event whose fields
    have the types the job relies on, or None (a request the extract job answers as rejected)."""
    event = rendezvous_parse(value)
    if event is None:
        return
    kind = event[0]
    assert kind in ("request", "score", "rejection", "outcome", "bad_outcome", "token")
    if kind == "request":
        assert type(event[1]) is str and type(event[2]) is int
    elif kind == "score":
        assert isinstance(event[1], str) and isinstance(event[3], float)
    elif kind == "outcome":
        assert event[2] in (0, 1)
    elif kind == "token":
        assert isinstance(event[1], dict)


@fuzz(60)
@given(values=st.lists(st.none() | wire_values, max_size=12))
def test_worker_scores_or_rejects_each_record_exactly_once(values):
    records = [KafkaRecord(b"k", v, (), "features", 0, offset) for offset, v in enumerate(values)]
    batch = score_batch(FakeModel(), records, STAMP, received_at=1.0, clock=lambda: 2.0)
    handled = sorted([r.offset for r, _ in batch.scored] + [r.offset for r, _ in batch.rejected])
    assert handled == list(range(len(values)))
    assert all(isinstance(reason, str) and reason for _, reason in batch.rejected)


TXN = get_extractor("txn@1")


@fuzz(300)
@given(payload=payloads | python_value, request_id=st.none() | st.text(max_size=8))
def test_client_refuses_before_sending_exactly_what_the_extract_stage_would_refuse(payload, request_id):
    """What the client's check lets through goes over the wire and through the extractor as the extract job
    runs them; what it refuses raises RequestRejected naming the field, never anything else."""
    request = Request(request_id if request_id is not None else "r1", 1_700_000_000_000, payload)
    try:
        check_request(request, TXN)
    except RequestRejected as exc:
        assert exc.stage == "client" and exc.field.startswith(("request", "payload"))
        return
    on_the_wire = Request.from_json(request.to_json())
    assert TXN.extract(on_the_wire.payload).shape == (TXN.width,)
    assert request.key
