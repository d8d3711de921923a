"""Fuzzed event sequences through the rendezvous's state machine: whatever comes for a request (its request
with any ts, scores of any model, duplicates, a rejection, outcomes, in any order) it is answered once at
most, once for sure when its request or rejection came, its state is freed, and every timer fits Flink's
64-bit processing-time timers."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rendezvous.core import RequestState, on_outcome, on_rejection, on_request, on_score, on_timer
from rendezvous.policy import Arm, Fallback, Policy
from scorestream.contract import Rejection
from tests.fuzzing import fuzz, json_float, json_int

pytestmark = pytest.mark.timeout(120)

POLICY = Policy(1, 100, (Arm("m3@1"), Arm("m2@1", 0.5)), (Fallback(30, ("m2@1",)),), 0.0, canary="m1@1",
                outcome_horizon_s=5)
NOW = 1_700_000_000_000
models = st.sampled_from(["m3@1", "m2@1", "m1@1", "other@1"])
events = st.lists(st.one_of(
    st.tuples(st.just("request"), json_int),
    st.tuples(st.just("score"), models, json_float),
    st.tuples(st.just("rejection"), st.none() | json_int),
    st.tuples(st.just("outcome"), st.sampled_from([0, 1])),
    st.tuples(st.just("wait"), st.integers(0, 20_000)),
), max_size=10)


@fuzz(800)
@given(events=events, preferred=models)
def test_one_answer_per_request_whatever_comes_and_its_state_is_freed(events, preferred):
    state, timers, results, now = RequestState(), [], [], NOW
    cleared = False

    def apply(step):
        nonlocal cleared, state
        assert all(-2**63 <= t < 2**63 for t in step.timers)
        if step.result is not None:
            results.append(step.result)
        for t in step.cancel:
            timers.remove(t)
        for t in step.timers:
            heapq.heappush(timers, t)
        if step.clear:
            cleared, state = True, RequestState()

    def fire_until(t_end):
        nonlocal now
        while timers and timers[0] <= t_end:
            now = max(now, heapq.heappop(timers))
            apply(on_timer(state, "r", POLICY, now))

    came = False
    for kind, *args in events:
        if kind == "wait":
            fire_until(now + args[0])
            now += args[0]
            continue
        if cleared:         # a new state, as Flink's keyed state after a clear: a new life of the key
            break
        if kind == "request":
            came = True
            apply(on_request(state, "r", args[0], preferred, POLICY, now))
        elif kind == "score":
            apply(on_score(state, "r", args[0], args[1], POLICY, now))
        elif kind == "rejection":
            came = True
            apply(on_rejection(state, Rejection("r", "extract", "bad", "payload", args[0]), POLICY, now))
        elif state != RequestState():        # the job joins an outcome with a state held, never stores one
            apply(on_outcome(state, args[0]))
    fire_until(2**63)
    assert len(results) <= 1
    assert len(results) == 1 or not came
    assert timers == [] and (cleared or state == RequestState())
