"""The per-request state machine driven by a tiny simulated clock: one answer each, state freed."""

import heapq

from rendezvous.core import GRACE_MS, RequestState, on_request, on_score, on_timer
from rendezvous.policy import Arm, Fallback, Policy

POLICY = Policy(1, 100, (Arm("m3@1"),), (Fallback(30, ("m2@1",)),), 0.0, canary="m1@1", outcome_horizon_s=5)


class Sim:
    """Keyed state and timers the way the Flink job holds them."""

    def __init__(self):
        self.states, self.timers, self.results, self.events = {}, [], [], []

    def apply(self, key, step):
        if step.result:
            self.results.append(step.result)
        if step.event:
            self.events.append(step.event)
        for t in step.cancel:
            self.timers.remove((t, key))
            heapq.heapify(self.timers)
        for t in step.timers:
            heapq.heappush(self.timers, (t, key))
        if step.clear:
            self.states.pop(key, None)

    def request(self, key, ts, now):
        self.apply(key, on_request(self.states.setdefault(key, RequestState()), key, ts, "m3@1", POLICY, now))

    def score(self, key, model, value, now):
        self.apply(key, on_score(self.states.setdefault(key, RequestState()), key, model, value, POLICY, now))

    def run_until(self, now):
        while self.timers and self.timers[0][0] <= now:
            t, key = heapq.heappop(self.timers)
            if key in self.states:
                self.apply(key, on_timer(self.states[key], key, POLICY, t))


def test_every_request_one_answer_and_state_is_freed():
    sim = Sim()
    for i in range(5000):
        now = i * 2
        sim.run_until(now)
        sim.request(f"r{i}", ts=now, now=now)
        if i % 3 == 0:
            sim.score(f"r{i}", "m3@1", 0.9, now + 5)        # preferred in time
        elif i % 3 == 1:
            sim.score(f"r{i}", "m2@1", 0.4, now + 10)       # fallback after 30 ms
        sim.score(f"r{i}", "m1@1", 0.2, now + 1)            # the canary always
    sim.run_until(10 ** 9)
    assert len(sim.results) == 5000
    assert len({r.request_id for r in sim.results}) == 5000
    assert {r.rule for r in sim.results} == {"preferred", "fallback@30ms", "default"}
    assert all(r.latency_ms <= 100 for r in sim.results)
    assert sim.states == {}                                  # nothing outlives its grace period
    assert sim.timers == []


def test_one_timer_per_request_at_a_time():
    sim = Sim()
    sim.request("r", 0, 0)
    assert sim.timers == [(30, "r")]
    sim.score("r", "m3@1", 0.9, 5)                           # answered: the deadline is deleted, grace begins
    assert sim.timers == [(POLICY.sla_ms + GRACE_MS, "r")]
    sim.score("ghost", "m1@1", 0.5, 6)                       # the canary's score: never an answer by itself
    sim.request("ghost", 4, 7)                               # the request after its score: the orphan timer goes
    assert sorted(sim.timers) == [(34, "ghost"), (POLICY.sla_ms + GRACE_MS, "r")]


def test_duplicates_and_late_scores_never_answer_twice():
    sim = Sim()
    sim.request("r", 0, 0)
    sim.score("r", "m1@1", 0.1, 1)
    sim.score("r", "m1@1", 0.1, 2)
    sim.run_until(30)
    sim.score("r", "m2@1", 0.3, 40)                          # eligible now: answers
    sim.score("r", "m3@1", 0.9, 50)                          # late
    sim.request("r", 0, 60)                                  # duplicate request
    sim.run_until(10 ** 9)
    assert [r.rule for r in sim.results] == ["fallback@30ms"]
    assert sim.results[0].canary == {"score": 0.1, "delta": 0.3 - 0.1}
    assert sim.events == ["duplicate_score", "late_score", "duplicate_request"]


def test_scores_without_request_are_dropped_after_grace_and_counted():
    sim = Sim()
    sim.score("ghost", "m3@1", 0.5, 0)
    sim.run_until(POLICY.sla_ms + GRACE_MS)
    assert sim.results == [] and sim.states == {} and sim.events == ["orphan_scores"]


def test_score_before_request_answers_at_arrival():
    sim = Sim()
    sim.score("r", "m3@1", 0.7, 0)
    sim.request("r", 0, 3)
    assert [(r.rule, r.score) for r in sim.results] == [("preferred", 0.7)]
