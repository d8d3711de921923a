"""The client refuses locally what the extract job would refuse, with the same kind of reason."""

import math

import pytest

from extractors import get_extractor
from scorestream.client import RequestRejected, check_request
from scorestream.contract import Request, Result
from scorestream.synthetic import TransactionGenerator

TXN = get_extractor("txn@1")
GOOD = next(iter(TransactionGenerator(1))).payload


def test_a_good_request_passes():
    check_request(Request("r1", 1, GOOD), TXN)


@pytest.mark.parametrize("payload, field, reason", [
    ({k: v for k, v in GOOD.items() if k != "amount"}, "payload.amount", "'amount' is missing"),
    (dict(GOOD, amount="x"), "payload.amount", "'amount' must be a number"),
    (dict(GOOD, amount=math.inf), "payload.amount", "must be a finite number"),
    (dict(GOOD, local_hour=25), "payload.local_hour", "must be in 0..23"),
])
def test_a_bad_payload_is_named(payload, field, reason):
    with pytest.raises(RequestRejected, match=reason) as caught:
        check_request(Request("r1", 1, payload), TXN)
    assert (caught.value.stage, caught.value.field) == ("client", field)


def test_the_envelope_is_checked_without_an_extractor():
    with pytest.raises(RequestRejected, match="'payload' must be dict") as caught:
        check_request(Request("r1", 1, ["not", "an", "object"]), None)
    assert caught.value.field == "request.payload"
    check_request(Request("r1", 1, {"anything": 1}), None)       # envelope only: the payload is not judged


def test_a_payload_json_cannot_carry():
    with pytest.raises(RequestRejected, match="not JSON") as caught:
        check_request(Request("r1", 1, {"when": object()}), None)
    assert caught.value.field == "payload"


def test_a_rejected_result_carries_its_reason():
    result = Result("r1", None, None, None, "rejected", 3.0, {}, None, 1,
                    {"stage": "extract", "reason": "payload field 'amount' is missing", "field": "payload.amount"})
    error = RequestRejected.of(result)
    assert (error.stage, error.field, error.result) == ("extract", "payload.amount", result)
    assert str(error) == "rejected by extract: payload field 'amount' is missing"
