"""The rendezvous job's own Python per request, without Kafka or Flink.

    python -m rendezvous.bench_core [--requests 5000] [--rounds 5] [--cold]

Each synthetic request goes through what the job's process function does with
its five records (the request and the four scores of the default policy): parse,
the bandit's choice and caps, the extractor's refusal, the state machine of
rendezvous/core.py, the state pickled after and unpickled before each record
(as Flink's keyed state holds it), and the answer's JSON. What is left of the
job's CPU per request (docs/benchmarks.md, "What a request costs") is PyFlink's
and Flink's per-record work: state and timer calls, row conversion, Kafka.

In the job each record is a call from the JVM, whose work in between evicts the CPU's caches: --cold does
that between records here too (by copying a buffer larger than a core's caches, not timed).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time

from models.registry import parse_ref
from rendezvous import core
from rendezvous.bandit import Bandit
from rendezvous.job import Rendezvous, parse
from rendezvous.policy import Policy
from scorestream.contract import Request, Score
from scorestream.synthetic import TransactionGenerator


def records(policy: Policy, n: int) -> list[tuple[str, list[str]]]:
    """n requests as the job reads them, each with a score of every model the policy names."""
    models = [(arm.model, "candidate") for arm in policy.arms] + [(policy.canary, "canary")]
    out = []
    for i, sample in enumerate(TransactionGenerator(seed=1).batch(n)):
        request = Request(sample.request_id, 1_000 + i, sample.payload).to_json().decode()
        scores = [Score(sample.request_id, *parse_ref(ref), role, 0.3, "bench", 1, 2, policy.extractor).to_json().decode()
                  for ref, role in models]
        out.append((request, scores))
    return out


def one_round(policy: Policy, inputs: list[tuple[str, list[str]]], cold: bool = False) -> tuple[float, int]:
    """Microseconds per request, and how many requests were answered (all, by a score, if the loop is right)."""
    bandit = Bandit()
    answered = 0
    spent = 0.0
    for request, scores in inputs:
        _evict(cold)
        started = time.perf_counter()
        _, request_id, ts, payload = parse(request)
        state = core.RequestState()
        core.on_request(state, request_id, ts, bandit.choose(policy), policy, ts + 2, bandit.capped(policy),
                        Rendezvous._refusal(policy, payload))
        stored = pickle.dumps(state)
        spent += time.perf_counter() - started
        for j, value in enumerate(scores):
            _evict(cold)
            started = time.perf_counter()
            _, request_id, model, score = parse(value)
            state = pickle.loads(stored)
            step = core.on_score(state, request_id, model, score, policy, ts + 10 + j, bandit.capped(policy))
            stored = pickle.dumps(state)
            if step.result:
                step.result.to_json()
                answered += 1
            spent += time.perf_counter() - started
    return spent / len(inputs) * 1e6, answered


EVICTION = bytearray(8 * 1024 * 1024)       # twice a core's L2 cache here (4 MiB)


def _evict(cold: bool) -> None:
    if cold:
        bytes(EVICTION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="evict the CPU's caches before each record")
    args = parser.parse_args()
    policy = Policy.load()
    inputs = records(policy, args.requests)
    runs = [one_round(policy, inputs, args.cold)[0] for _ in range(args.rounds)]
    caches = ", caches evicted before each record" if args.cold else ""
    print(f"job's own Python{caches}: {statistics.median(runs):.1f} µs per request of {1 + len(inputs[0][1])} records "
          f"(median of {args.rounds} rounds of {args.requests}; range {min(runs):.1f}–{max(runs):.1f})")


if __name__ == "__main__":
    main()
