"""txn@1: the transaction payload of the synthetic generator -> 20 named features.

Frozen: models in models/registry were trained on exactly this. Change
anything (a feature, a scale, how an unknown category is coded) in a txn@2.

>>> from scorestream.synthetic import TransactionGenerator
>>> x = TxnV1().extract(TransactionGenerator(1).batch(1)[0].payload)
>>> x.shape, str(x.dtype)
((20,), 'float32')
>>> TxnV1().extract({"amount": "12"})
Traceback (most recent call last):
...
extractors.ExtractError: payload field 'amount' must be a number, got str
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from extractors import ExtractError, Extractor

# The merchant categories known to txn@1, in one-hot order. An unknown one
# sets `category_other` instead: new categories appear in production before
# models know them, and a transaction must still be scored.
CATEGORIES = ("grocery", "fuel", "restaurant", "travel", "electronics", "gaming", "jewelry", "pharmacy")

FEATURES = (
    "log_amount",                 # log(amount)
    "log_avg_amount_30d",         # log(avg_amount_30d)
    "log_amount_ratio",           # log(amount / avg_amount_30d): how unusual this amount is
    "foreign",                    # merchant_country != card_country
    "card_present",
    "new_device",
    "night",                      # local_hour < 6
    "local_hour",
    "log1p_txn_count_24h",
    "log1p_customer_age_years",
    "distance_1000km",
    *(f"category_{c}" for c in CATEGORIES),
    "category_other",
)
DISTANCE = FEATURES.index("distance_1000km")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _get(payload: dict[str, Any], field: str) -> Any:
    try:
        return payload[field]
    except KeyError:
        raise ExtractError(field, "is missing") from None


def _number(payload: dict[str, Any], field: str, positive: bool = False) -> float:
    v = _get(payload, field)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExtractError(field, f"must be a number, got {type(v).__name__}")
    try:
        v = float(v)
    except OverflowError:                       # an int beyond a double (from Python; JSON cannot carry one)
        raise ExtractError(field, "must be a finite number, got an integer beyond a double") from None
    if not math.isfinite(v) or (positive and v <= 0) or v < 0:
        raise ExtractError(field, f"must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    return v


def _flag(payload: dict[str, Any], field: str) -> float:
    v = _get(payload, field)
    if not isinstance(v, bool):
        raise ExtractError(field, f"must be true or false, got {type(v).__name__}")
    return 1.0 if v else 0.0


def _text(payload: dict[str, Any], field: str) -> str:
    v = _get(payload, field)
    if not isinstance(v, str):
        raise ExtractError(field, f"must be a string, got {type(v).__name__}")
    return v


class TxnV1(Extractor):
    name = "txn"
    version = 1
    feature_names = FEATURES

    def extract(self, payload: dict[str, Any]) -> np.ndarray:
        if not isinstance(payload, dict):
            raise ExtractError("payload", f"must be an object, got {type(payload).__name__}")
        amount = _number(payload, "amount", positive=True)
        avg = _number(payload, "avg_amount_30d", positive=True)
        hour = _number(payload, "local_hour")
        if hour > 23:
            raise ExtractError("local_hour", f"must be in 0..23, got {hour!r}")
        category = _text(payload, "merchant_category")
        one_hot = [0.0] * (len(CATEGORIES) + 1)
        one_hot[CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)] = 1.0
        ratio = amount / avg
        if not 0 < ratio < math.inf:            # 1e-300 / 1e300: each finite, their ratio not
            raise ExtractError("amount", f"and avg_amount_30d are too far apart: {amount!r} / {avg!r}")
        values = [
            math.log(amount),
            math.log(avg),
            math.log(ratio),
            1.0 if _text(payload, "merchant_country") != _text(payload, "card_country") else 0.0,
            _flag(payload, "card_present"),
            _flag(payload, "new_device"),
            1.0 if hour < 6 else 0.0,
            hour,
            math.log1p(_number(payload, "txn_count_24h")),
            math.log1p(_number(payload, "customer_age_days") / 365.0),
            _number(payload, "distance_km") / 1000.0,
            *one_hot,
        ]
        if values[DISTANCE] > FLOAT32_MAX:      # the one feature that could pass float32's range
            raise ExtractError("distance_km", f"must be below 3.4e41, got {payload['distance_km']!r}")
        return np.array(values, dtype=np.float32)
