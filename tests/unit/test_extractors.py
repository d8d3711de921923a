"""Extractors: pure, fixed width, named features, errors that name the field."""

import copy
import math

import numpy as np
import pytest

from extractors import ExtractError, UnknownExtractor, get_extractor, list_extractors
from extractors.txn import CATEGORIES
from scorestream.errors import UserError
from scorestream.synthetic import TransactionGenerator

PAYLOAD = {"customer_id": "c000001", "amount": 200.0, "currency": "EUR", "merchant_category": "jewelry",
           "merchant_country": "FR", "card_country": "DE", "card_present": False, "new_device": True,
           "local_hour": 3, "txn_count_24h": 4, "avg_amount_30d": 50.0, "customer_age_days": 730,
           "distance_km": 850.0}


@pytest.fixture
def txn():
    return get_extractor("txn@1")


def test_known_extractors():
    assert list_extractors() == ["txn@1"]


def test_unknown_extractor_is_a_user_error_listing_the_known():
    with pytest.raises(UnknownExtractor, match="txn@1") as info:
        get_extractor("txn@2")
    assert isinstance(info.value, UserError)


def test_every_synthetic_payload_gives_a_finite_vector_of_the_width(txn):
    X = txn.extract_many([s.payload for s in TransactionGenerator(3).batch(5000)])
    assert X.shape == (5000, txn.width) and X.dtype == np.float32
    assert np.isfinite(X).all()
    assert X[:, txn.feature_names.index("category_other")].sum() == 0   # the generator knows no other category


def test_features_have_the_values_their_names_say(txn):
    f = dict(zip(txn.feature_names, txn.extract(PAYLOAD).tolist()))
    assert f["log_amount"] == pytest.approx(math.log(200.0))
    assert f["log_amount_ratio"] == pytest.approx(math.log(4.0))
    assert (f["foreign"], f["card_present"], f["new_device"], f["night"]) == (1.0, 0.0, 1.0, 1.0)
    assert f["local_hour"] == 3.0
    assert f["log1p_txn_count_24h"] == pytest.approx(math.log(5.0))
    assert f["log1p_customer_age_years"] == pytest.approx(math.log(3.0))
    assert f["distance_1000km"] == pytest.approx(0.85)
    assert [f[f"category_{c}"] for c in CATEGORIES] == [float(c == "jewelry") for c in CATEGORIES]


def test_unknown_category_is_coded_other_not_refused(txn):
    f = dict(zip(txn.feature_names, txn.extract(PAYLOAD | {"merchant_category": "florist"}).tolist()))
    assert f["category_other"] == 1.0 and sum(f[f"category_{c}"] for c in CATEGORIES) == 0.0


def test_pure_same_input_same_output_and_input_untouched(txn):
    before = copy.deepcopy(PAYLOAD)
    assert np.array_equal(txn.extract(PAYLOAD), txn.extract(PAYLOAD))
    assert PAYLOAD == before


@pytest.mark.parametrize("change, field, words", [
    ({"amount": None}, "amount", "must be a number"),
    ({"amount": True}, "amount", "must be a number, got bool"),
    ({"amount": 0}, "amount", "> 0"),
    ({"avg_amount_30d": float("nan")}, "avg_amount_30d", "finite"),
    ({"distance_km": -1.0}, "distance_km", ">= 0"),
    ({"local_hour": 24}, "local_hour", "0..23"),
    ({"card_present": "yes"}, "card_present", "true or false"),
    ({"merchant_category": 7}, "merchant_category", "must be a string"),
])
def test_bad_fields_are_named(txn, change, field, words):
    with pytest.raises(ExtractError, match=words) as info:
        txn.extract(PAYLOAD | change)
    assert info.value.field == field and field in str(info.value)


def test_missing_field_is_named(txn):
    payload = {k: v for k, v in PAYLOAD.items() if k != "txn_count_24h"}
    with pytest.raises(ExtractError, match="'txn_count_24h' is missing"):
        txn.extract(payload)


def test_extract_error_is_a_value_error(txn):
    with pytest.raises(ValueError):
        txn.extract("not a dict")


def test_refusal_names_the_field_as_a_rejection_does(txn):
    assert txn.refusal(PAYLOAD) is None
    assert txn.refusal(PAYLOAD | {"amount": "x"}) == ("payload.amount", "payload field 'amount' must be a number, got str")
    assert txn.refusal("not a dict")[0] == "payload"
