"""A deterministic generator of transaction-like scoring requests with a known truth.

The same seed gives the same payloads, request ids and labels, so training
(models/train.py), load (`publish --synthetic`, `bench`) and tests share one
source. The label follows a logistic ground truth with interactions, so trees
can beat a linear model, but both learn something.

Two regimes share the payloads of a seed and differ only in the ground truth:
- `old`: the truth the demo models fraud_lr@1, fraud_xgb@2..4 were trained on;
- `new`: the world changed: travel merchants between 18:00 and 23:59 local
  time turn risky (+NEW_RISK_LOGIT on the fraud logit, about 1 transaction in
  32). Models trained on the old regime miss it; fraud_xgb@5 was trained on it.

>>> a, b = TransactionGenerator(seed=7), TransactionGenerator(seed=7)
>>> a.batch(3) == b.batch(3)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

CATEGORIES = ("grocery", "fuel", "restaurant", "travel", "electronics", "gaming", "jewelry", "pharmacy")
RISKY_CATEGORIES = frozenset({"electronics", "gaming", "jewelry"})
REGIMES = ("old", "new")
NEW_RISK_CATEGORY, NEW_RISK_HOURS, NEW_RISK_LOGIT = "travel", range(18, 24), 4.0
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "PL")
CURRENCY = {"GB": "GBP", "US": "USD", "PL": "PLN"}


@dataclass(frozen=True)
class Sample:
    request_id: str
    payload: dict[str, Any]
    label: int            # 1 = fraud; ground truth, never part of the payload
    fraud_probability: float


def fraud_logit(amount, avg_amount, foreign, new_device, night, txn_24h, age_days, risky, card_present, distance):
    """The ground truth, vectorised over numpy arrays."""
    ratio = np.log(amount / avg_amount)
    return (-4.6 + 0.9 * ratio + 1.4 * foreign + 0.7 * new_device + 0.8 * night
            + 0.5 * np.log1p(txn_24h) - 0.35 * np.log1p(age_days / 365.0)
            + 1.6 * risky * (1 - card_present) + 0.9 * foreign * new_device * (ratio > 1.0)
            + 0.0006 * distance)


def new_risk(category: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Where the new regime's truth differs: category indices and local hours -> bool array."""
    return (category == CATEGORIES.index(NEW_RISK_CATEGORY)) & np.isin(hour, list(NEW_RISK_HOURS))


def fresh_seed() -> int:
    """A seed never used before (in all likelihood): a seed fixes the request ids, so traffic sent to a system
    that already saw a seed's requests (a second warm-up, a second run) must not reuse it, or its requests
    would be answered twice."""
    return random.randrange(1 << 62)


class TransactionGenerator:
    def __init__(self, seed: int = 0, regime: str = "old"):
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
        self.seed, self.regime = seed, regime
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> list[Sample]:
        rng = self.rng
        avg = np.round(rng.lognormal(3.6, 0.7, n), 2)
        amount = np.round(np.maximum(0.5, avg * rng.lognormal(0.0, 0.8, n)), 2)
        home = rng.integers(0, len(COUNTRIES), n)
        foreign = rng.random(n) < 0.12
        where = np.where(foreign, (home + rng.integers(1, len(COUNTRIES), n)) % len(COUNTRIES), home)
        category = rng.integers(0, len(CATEGORIES), n)
        card_present = rng.random(n) < 0.55
        new_device = (~card_present) & (rng.random(n) < 0.15)
        hour = rng.integers(0, 24, n)
        txn_24h = rng.poisson(2.0, n)
        age_days = rng.integers(1, 4000, n)
        distance = np.round(np.where(foreign, rng.uniform(200, 3000, n), rng.exponential(12.0, n)), 1)
        customer = rng.integers(0, 200_000, n)
        ids = rng.integers(0, 2**63 - 1, n, dtype=np.int64)
        risky = np.isin(category, [CATEGORIES.index(c) for c in RISKY_CATEGORIES])
        logit = fraud_logit(amount, avg, foreign, new_device, hour < 6, txn_24h, age_days, risky, card_present,
                            distance)
        if self.regime == "new":
            logit = logit + NEW_RISK_LOGIT * new_risk(category, hour)
        p = 1.0 / (1.0 + np.exp(-logit))
        label = rng.random(n) < p
        rows = zip(ids.tolist(), amount.tolist(), avg.tolist(), home.tolist(), where.tolist(), category.tolist(),
                   card_present.tolist(), new_device.tolist(), hour.tolist(), txn_24h.tolist(), age_days.tolist(),
                   distance.tolist(), customer.tolist(), label.tolist(), p.tolist())
        out = []
        for rid, amt, av, hm, wh, cat, cp, nd, hr, tx, age, dist, cust, lab, prob in rows:
            merchant_country = COUNTRIES[wh]
            out.append(Sample(f"{rid:016x}", {
                "customer_id": f"c{cust:06d}",
                "amount": amt,
                "currency": CURRENCY.get(merchant_country, "EUR"),
                "merchant_category": CATEGORIES[cat],
                "merchant_country": merchant_country,
                "card_country": COUNTRIES[hm],
                "card_present": cp,
                "new_device": nd,
                "local_hour": hr,
                "txn_count_24h": tx,
                "avg_amount_30d": av,
                "customer_age_days": age,
                "distance_km": dist,
            }, int(lab), prob))
        return out

    def __iter__(self) -> Iterator[Sample]:
        while True:
            yield from self.batch(4096)
