"""Strategies and settings shared by the property-based tests (tests/unit/test_fuzz_*.py).

The examples per target are fixed and derandomized, so `make test` is fast and never flaky: the same inputs
on every run. SCORESTREAM_FUZZ_SCALE=20 runs twenty times as many, random ones, to hunt (see docs/operations.md).
"""

from __future__ import annotations

import os
import string

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("SCORESTREAM_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """`examples` inputs per run (times SCALE); no per-example deadline: this machine is shared and loaded."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=SCALE == 1,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# Numbers as orjson reads them: integers within [-2**63, 2**64 - 1], finite doubles.
json_int = st.integers(-2**63, 2**64 - 1) | st.sampled_from([-2**63, 2**63 - 1, 2**63, 2**64 - 1])
json_float = st.floats(allow_nan=False, allow_infinity=False)
json_scalar = st.none() | st.booleans() | json_int | json_float | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

# Python values a caller may hand the client: what JSON cannot carry too (big ints, NaN, bytes, non-str keys).
python_scalar = (json_scalar | st.integers() | st.floats() | st.binary(max_size=8) | st.text(max_size=8)
                 | st.sampled_from(["\ud800", "a\udfffb"]))
python_value = st.recursive(python_scalar, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                            | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), inner, max_size=3),
                            max_leaves=10)


def near(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the valid kind of value, sometimes anything JSON: inputs that get past the first check."""
    return st.one_of(valid, valid, json_value)


def documents(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """JSON objects with any subset of `fields` (each near its valid kind) plus a stray key now and then."""
    return st.builds(lambda known, extra: {**extra, **known},
                     st.fixed_dictionaries({}, optional={k: near(v) for k, v in fields.items()}),
                     st.dictionaries(st.text(string.ascii_lowercase, max_size=6), json_value, max_size=2))


# The fields of the payload txn@1 reads, each near a valid value.
PAYLOAD_FIELDS = {
    "amount": json_float | json_int, "avg_amount_30d": json_float | json_int,
    "local_hour": st.integers(-1, 25) | st.floats(-1, 25), "merchant_category": st.sampled_from(
        ["grocery", "fuel", "travel", "gaming", "unknown", ""]),
    "merchant_country": st.sampled_from(["FR", "DE", ""]), "card_country": st.sampled_from(["FR", "DE"]),
    "card_present": st.booleans(), "new_device": st.booleans(),
    "txn_count_24h": json_float | json_int, "customer_age_days": json_float | json_int,
    "distance_km": json_float | json_int,
}
payloads = documents(PAYLOAD_FIELDS)
