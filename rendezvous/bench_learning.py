"""How many outcomes the bandit needs before the better arm holds 85 % of the preferences (no Kafka, no Flink).

    python -m rendezvous.bench_learning [--seeds 5] [--discount 1.0 --discount 0.9999 ...]

The real models (registry ONNX files, the workers' backend) score synthetic
traffic; the learning rule of rendezvous/bandit.py learns from each outcome
in order; after every STEP outcomes the share of requests that would prefer
each arm is estimated from 2,000 Thompson draws. Two scenarios:
- `fresh`: arms fraud_xgb@3 and fraud_xgb@5 from the prior, on new-regime traffic;
- `after change`: first --before outcomes of old-regime traffic (where @5 is
  no better), then the world changes to the new regime: this is what the
  discount is for.
Reported: outcomes (counted from the start of new-regime traffic) until the
share of @5 first reaches 85 %, median and range over seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics

import numpy as np

from extractors import get_extractor
from models.registry import load_model
from rendezvous.bandit import Bandit, learn
from rendezvous.policy import Arm, Policy
from scorestream.synthetic import TransactionGenerator

ARMS = ("fraud_xgb@3", "fraud_xgb@5")
STEP, DRAWS, TARGET = 100, 2000, 0.85


def scored(seed: int, rows: int, regime: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    samples = TransactionGenerator(seed, regime).batch(rows)
    X = get_extractor("txn@1").extract_many([s.payload for s in samples])
    return np.array([s.label for s in samples]), {m: load_model(m).predict(X) for m in ARMS}


def share_of_better(bandit: Bandit, policy: Policy) -> float:
    return sum(bandit.choose(policy) == ARMS[1] for _ in range(DRAWS)) / DRAWS


def outcomes_until(seed: int, discount: float, before: int, limit: int) -> int | None:
    """Outcomes of new-regime traffic until @5 is preferred for TARGET of the requests (None: not within limit)."""
    policy = Policy(1, 100, tuple(Arm(m) for m in ARMS), (), 0.0, discount=discount)
    bandit = Bandit(rng=random.Random(seed))
    if before:
        labels, scores = scored(seed + 1000, before, "old")
        for i in range(before):
            learn(bandit.posteriors, {m: float(scores[m][i]) for m in ARMS}, int(labels[i]), discount)
    labels, scores = scored(seed, limit, "new")
    for i in range(limit):
        learn(bandit.posteriors, {m: float(scores[m][i]) for m in ARMS}, int(labels[i]), discount)
        if (i + 1) % STEP == 0 and share_of_better(bandit, policy) >= TARGET:
            return i + 1
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--discount", type=float, action="append", help="repeatable [1.0, 0.9999, 0.999]")
    ap.add_argument("--before", type=int, default=50_000, help="old-regime outcomes before the change")
    ap.add_argument("--limit", type=int, default=60_000, help="new-regime outcomes at most")
    args = ap.parse_args(argv)
    for discount in args.discount or [1.0, 0.9999, 0.999]:
        for name, before in (("fresh", 0), ("after change", args.before)):
            runs = [outcomes_until(seed, discount, before, args.limit) for seed in range(args.seeds)]
            done = sorted(r for r in runs if r is not None)
            text = (f"median {statistics.median(done):,.0f} (range {done[0]:,}-{done[-1]:,})" if done else "never")
            missed = len(runs) - len(done)
            print(f"discount {discount:<7} {name:<13} outcomes until @5 holds {TARGET:.0%}: {text}"
                  + (f"; {missed} of {len(runs)} seeds not within {args.limit:,}" if missed else ""), flush=True)


if __name__ == "__main__":
    main()
