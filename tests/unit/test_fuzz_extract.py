"""Fuzzed payloads through the extractor and the extract job's handling of a record: a finite float32 vector
of the extractor's width, or an ExtractError/ContractError naming the field: the record's dead letter."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from extractors import ExtractError, get_extractor
from extractors.job import extract_record, rejection_of
from scorestream.contract import ContractError
from tests.fuzzing import PAYLOAD_FIELDS, documents, fuzz, json_int, json_value, payloads, python_value

pytestmark = pytest.mark.timeout(120)

TXN = get_extractor("txn@1")
VALID = {"amount": 12.5, "avg_amount_30d": 40.0, "local_hour": 13, "merchant_category": "fuel",
         "merchant_country": "FR", "card_country": "FR", "card_present": True, "new_device": False,
         "txn_count_24h": 2, "customer_age_days": 800, "distance_km": 3.0}


@fuzz(600)
@given(payload=payloads | python_value | st.fixed_dictionaries({}, optional=PAYLOAD_FIELDS).map(
    lambda changed: {**VALID, **changed}))            # a valid payload, some fields changed
@example({**VALID, "amount": 1e-300, "avg_amount_30d": 1e300})      # a ratio that underflows to 0
@example({**VALID, "amount": 1e300, "avg_amount_30d": 1e-300})      # and one that overflows
@example({**VALID, "distance_km": 1e300})                            # beyond float32
@example({**VALID, "amount": 10**400})                               # beyond a double (from Python)
def test_extractor_gives_finite_features_or_an_extract_error(payload):
    try:
        x = TXN.extract(payload)
    except ExtractError as exc:
        assert exc.field and str(exc).startswith("payload field")
        return
    assert x.shape == (TXN.width,) and x.dtype == np.float32 and np.isfinite(x).all()


requests = documents({"request_id": st.text(max_size=8), "ts": json_int, "payload": payloads})
values = st.none() | st.text(max_size=60) | (requests | json_value).map(lambda d: orjson.dumps(d).decode())


@fuzz(500)
@given(value=values)
def test_extract_job_gives_features_or_a_dead_letter_with_the_rejection_when_it_can_answer(value):
    """The extract job's per-record logic: features, or a reason (its dead letter) and, when the record names a
    request id, a rejection for the rendezvous to answer at once."""
    doc = None
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        pass
    try:
        request, vector = extract_record(TXN, value, doc)
    except (ContractError, ExtractError) as exc:
        rejection = rejection_of(value or "", exc)
        named = isinstance(doc, dict) and isinstance(doc.get("request_id"), str) and doc["request_id"]
        assert (rejection is not None) == bool(named)
        if rejection is not None:
            assert rejection.request_id == doc["request_id"] and rejection.field.startswith(("request", "payload"))
        return
    assert np.isfinite(vector).all() and request.request_id == doc["request_id"]
