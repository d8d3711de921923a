"""What a policy would have answered over the last minutes, from the scores and results that really flowed.

For every request answered in the window: its clock starts at the result's
time minus its latency (the request's ts); each model's score arrives at its
record's time on scoring.scores. The candidate policy then chooses as the job
would (Thompson draws from the posteriors in force, caps on answers, the
cascade, the default) and answers at the first moment it can. Latencies here
leave out the last hop to scoring.results (a few ms, docs/rendezvous.md), so
compare shares and canary deltas first.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from decoy.reader import RangeReader
from decoy.timerange import TimeRange
from rendezvous.bandit import Bandit
from rendezvous.learner import read_snapshot
from rendezvous.policy import Policy
from rendezvous.selection import canary_comparison, decide
from scorestream import kafka
from scorestream.contract import ContractError, Result, Score
from scorestream.topics import TopicRegistry


@dataclass
class Answers:
    """Who answered, by which rule, how fast, how far from the canary."""

    by_model: Counter = field(default_factory=Counter)
    by_rule: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    canary_deltas: list[float] = field(default_factory=list)

    def add(self, model: str | None, rule: str, latency_ms: float, canary: dict | None) -> None:
        self.by_model[model or "default"] += 1
        self.by_rule[rule] += 1
        self.latencies_ms.append(latency_ms)
        if canary:
            self.canary_deltas.append(canary["delta"])

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def share(self, counter: Counter, key: str) -> float:
        return counter[key] / self.count if self.count else 0.0

    def latency(self, q: float) -> float:
        return float(np.quantile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def mean_abs_canary_delta(self) -> float:
        return float(np.mean(np.abs(self.canary_deltas))) if self.canary_deltas else float("nan")


@dataclass
class Preview:
    served: Answers
    would: Answers
    minutes: float
    outcomes_learned: int | None


def answer(policy: Policy, bandit: Bandit, arrivals: dict[str, tuple[float, float]]):
    """The (answer, elapsed ms) of one request under `policy`; arrivals: model -> (ms after ts, score)."""
    preferred = bandit.choose(policy)
    capped = bandit.capped(policy)
    moments = sorted({t for t, _ in arrivals.values() if t < policy.sla_ms} | set(policy.deadlines_ms))
    for t in moments:
        scores = {m: s for m, (at, s) in arrivals.items() if at <= t}
        chosen = decide(policy, preferred, t, scores, capped)
        if chosen is not None:
            bandit.answered(chosen.model)
            return chosen, t, canary_comparison(policy, chosen, scores)
    raise AssertionError("decide answers at sla_ms, always")


def preview(policy: Policy, minutes: float = 5.0, registry: TopicRegistry | None = None,
            bootstrap: str | None = None, seed: int | None = None) -> Preview:
    registry = registry or TopicRegistry.load()
    now = int(time.time() * 1000)
    window = TimeRange(now - int(minutes * 60_000), now)
    served, starts = Answers(), {}
    for m in RangeReader(registry.name("results"), window, late_ms=0, bootstrap=bootstrap):
        try:
            r = Result.from_json(m.value())
        except ContractError:
            continue
        served.add(f"{r.model}@{r.version}" if r.model else None, r.rule, r.latency_ms, r.canary)
        starts[r.request_id] = m.timestamp()[1] - r.latency_ms
    arrivals: dict[str, dict[str, tuple[float, float]]] = {}
    scores_window = TimeRange(window.start_ms - 60_000, now)      # a request's scores come before its answer
    for m in RangeReader(registry.name("scores"), scores_window, late_ms=0, bootstrap=bootstrap):
        try:
            s = Score.from_json(m.value())
        except ContractError:
            continue
        if s.request_id in starts:
            arrivals.setdefault(s.request_id, {})[f"{s.model}@{s.version}"] = (
                m.timestamp()[1] - starts[s.request_id], s.score)
    snapshot = read_snapshot(kafka.last_value(registry.name("posteriors"), bootstrap))
    bandit = Bandit(rng=random.Random(seed))
    if snapshot:
        bandit.use(snapshot["posteriors"])
    would = Answers()
    for request_id in starts:
        chosen, elapsed, canary = answer(policy, bandit, arrivals.get(request_id, {}))
        would.add(chosen.model, chosen.rule, elapsed, canary)
    return Preview(served, would, minutes, snapshot["outcomes"] if snapshot else None)
