"""The per-request state machine of the rendezvous, without Flink.

The Flink job keeps one `RequestState` per request id and turns what these
functions return into Flink calls: results to emit, timers to register or
delete, state to store or clear. Times are epoch milliseconds; a request's clock starts at its `ts`.

>>> from rendezvous.policy import Arm, Policy
>>> policy = Policy(3, 100, (Arm("m@1"),), (), 0.5)
>>> state = RequestState()
>>> step = on_request(state, "r1", ts=1000, preferred="m@1", policy=policy, now=1002)
>>> step.timers                     # only the next deadline: here the SLA
(1100,)
>>> step = on_score(state, "r1", "m@1", 0.9, policy, now=1010)
>>> step.result.rule, step.timers, step.cancel   # answered: the SLA timer goes; the state stays for the outcome
('preferred', (31000,), (1100,))
>>> on_score(state, "r1", "m@1", 0.9, policy, now=1020).event
'duplicate_score'
>>> step = on_outcome(state, label=1)            # the truth, later: joined with every score of the request
>>> step.reward, step.event
(({'m@1': 0.9}, 1), 'outcome_joined')
>>> on_timer(state, "r1", policy, now=31000).clear   # state lives until ts + outcome_horizon_s (30 s)
True

A request the extract job refused is answered at once, without a score:

>>> from scorestream.contract import Rejection
>>> state = RequestState()
>>> step = on_rejection(state, Rejection("r2", "extract", "payload field 'amount' is missing", "payload.amount", 1000),
...                     policy, now=1004)
>>> step.result.rule, step.result.score, step.result.latency_ms, step.result.error["field"]
('rejected', None, 4.0, 'payload.amount')
>>> on_request(state, "r2", ts=1000, preferred="m@1", policy=policy, now=1005).event
'duplicate_request'

Should that rejection come after the SLA, the request's own refusal (the rendezvous's extractor) answers:

>>> state = RequestState()
>>> _ = on_request(state, "r3", ts=1000, preferred="m@1", policy=policy, now=1002,
...                refusal=("payload.amount", "payload field 'amount' is missing"))
>>> step = on_timer(state, "r3", policy, now=1100)
>>> step.result.rule, step.result.score, step.result.error["stage"]
('rejected', None, 'extract')
>>> on_rejection(state, Rejection("r3", "extract", "payload field 'amount' is missing", "payload.amount", 1000),
...              policy, now=1120).event
'late_rejection'

and so does a refused request that itself comes after the SLA:

>>> on_request(RequestState(), "r4", ts=1000, preferred="m@1", policy=policy, now=1150,
...            refusal=("payload.amount", "payload field 'amount' is missing")).result.rule
'rejected'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rendezvous.policy import Policy
from rendezvous.selection import canary_comparison, decide
from scorestream.contract import Rejection, Result

GRACE_MS = 10_000       # keep an answered request at least this long to recognise late and duplicate scores


@dataclass
class RequestState:
    ts: int | None = None              # None until the request itself is seen
    preferred: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    answered: bool = False
    first_seen: float | None = None    # when anything of this request arrived (clean-up of orphans)
    timer: int | None = None           # the one timer registered for this request
    label: int | None = None           # the outcome, once joined
    owner: str | None = None           # the deployment that took the request, during a hot swap only
    refusal: tuple[str, str] | None = None   # (field, reason) if the policy's extractor refuses the payload

    def __reduce__(self):
        # Flink pickles the state on every event: a tuple of fields pickles several times faster than __dict__
        return RequestState, (self.ts, self.preferred, self.scores, self.answered, self.first_seen, self.timer,
                              self.label, self.owner, self.refusal)


@dataclass(frozen=True)
class Step:
    result: Result | None = None
    timers: tuple[int, ...] = ()       # to register
    cancel: tuple[int, ...] = ()       # to delete: a deadline the answer made moot
    store: bool = False                # the state changed: write it back
    clear: bool = False
    event: str | None = None           # a counter to raise: duplicate_request, duplicate_score, late_score,
                                       # late_rejection, orphan_scores, outcome_joined, duplicate_outcome
    reward: tuple[dict[str, float], int] | None = None   # (scores, label): what the learner learns from


def on_request(state: RequestState, request_id: str, ts: int, preferred: str, policy: Policy, now: float,
               capped: frozenset[str] = frozenset(), refusal: tuple[str, str] | None = None) -> Step:
    """`refusal`: (field, reason) when the rendezvous's own extractor refuses the payload. The extract job's
    rejection answers such a request; should it come after the SLA, the deadline answers `rejected` with this
    reason instead of the default (see on_timer)."""
    if state.ts is not None:
        return Step(event="duplicate_request")
    state.ts, state.preferred, state.refusal = _clock_start(ts, now), preferred, refusal
    state.first_seen = state.first_seen or now
    result = _try_answer(state, request_id, policy, now, capped)
    return _schedule(state, _next_timer(state, policy, now), result=result)


def on_score(state: RequestState, request_id: str, model: str, score: float, policy: Policy, now: float,
             capped: frozenset[str] = frozenset()) -> Step:
    if model in state.scores:
        return Step(event="duplicate_score")
    state.scores[model] = score
    if state.answered:                         # too late to answer, not to learn from: kept for the outcome
        reward = ({model: score}, state.label) if state.label is not None else None
        return Step(store=True, event="late_score", reward=reward)
    if state.ts is None:                       # the score overtook its request, or no request will come
        if state.first_seen is None:
            state.first_seen = now
            return _schedule(state, int(now + policy.sla_ms + GRACE_MS))
        return Step(store=True)
    result = _try_answer(state, request_id, policy, now, capped)
    return _schedule(state, _next_timer(state, policy, now), result=result) if result else Step(store=True)


def on_outcome(state: RequestState, label: int) -> Step:
    """The request's outcome, while its state is held: every score so far is rewarded; a score that comes
    later is rewarded when it comes (on_score). A second outcome is counted and ignored."""
    if state.label is not None:
        return Step(event="duplicate_outcome")
    state.label = label
    return Step(store=True, event="outcome_joined", reward=(dict(state.scores), label) if state.scores else None)


def on_rejection(state: RequestState, rejection: Rejection, policy: Policy, now: float) -> Step:
    """A stage refused the request: answer `rejected` now, whether or not the request itself came yet."""
    if state.answered:
        return Step(event="late_rejection")    # answered first: at its deadline, or the SLA passed
    if state.ts is None:
        state.ts = _clock_start(rejection.ts if rejection.ts is not None else now, now)
    state.first_seen = state.first_seen or now
    result = _rejected(state, rejection.request_id, rejection.stage, rejection.field, rejection.reason, policy, now)
    return _schedule(state, _state_end(state, policy), result=result)


def _rejected(state: RequestState, request_id: str, stage: str, field_: str, reason: str, policy: Policy,
              now: float) -> Result:
    state.answered = True
    return Result(request_id, None, None, None, "rejected", round(float(now - state.ts), 3), {}, None,
                  policy.version, {"stage": stage, "reason": reason, "field": field_})


def on_timer(state: RequestState, request_id: str, policy: Policy, now: float,
             capped: frozenset[str] = frozenset()) -> Step:
    state.timer = None                         # the one timer this request had: it just fired
    if state.ts is None:
        return Step(clear=True, event="orphan_scores" if state.first_seen is not None else None)
    if now >= _state_end(state, policy):
        return Step(clear=True)
    result = _try_answer(state, request_id, policy, now, capped)
    return _schedule(state, _next_timer(state, policy, now), result=result)


def mark_answered(state: RequestState) -> bool:
    """A request answered by a run whose state was lost (a crash after the restored checkpoint): never answer
    it again; its timers then only free it after the grace period. True if it was not marked yet."""
    if state.answered:
        return False
    state.answered = True
    return True


def _clock_start(ts: int | float, now: float) -> int:
    """A request's clock starts at its ts, or now when that ts is ahead of this clock (a producer's clock
    runs fast, or a bogus ts): the deadlines and the state's end must come, and fit Flink's 64-bit timers."""
    return int(min(ts, now))


def _schedule(state: RequestState, timer: int, result: Result | None = None) -> Step:
    """One timer at a time (timers cost more than anything else in the job): register `timer`,
    delete the one it replaces."""
    previous, state.timer = state.timer, timer
    if previous == timer:
        return Step(result=result, store=True)
    return Step(result=result, timers=(timer,), cancel=() if previous is None else (previous,), store=True)


def _state_end(state: RequestState, policy: Policy) -> int:
    """When an answered request's state goes: past the grace period and the outcome horizon."""
    return int(state.ts + max(policy.sla_ms + GRACE_MS, policy.outcome_horizon_s * 1000))


def _next_timer(state: RequestState, policy: Policy, now: float) -> int:
    """The next deadline, or, once answered, the end of the state."""
    if state.answered:
        return _state_end(state, policy)
    return next(int(state.ts + d) for d in policy.deadlines_ms if state.ts + d > now)


def _try_answer(state: RequestState, request_id: str, policy: Policy, now: float,
                capped: frozenset[str]) -> Result | None:
    if state.answered:
        return None
    if state.refusal and now - state.ts >= policy.sla_ms:
        # the extract job's rejection is late (or the request itself came after the SLA): a refused payload
        # gets no default score, but the same refusal
        return _rejected(state, request_id, "extract", *state.refusal, policy, now)
    answer = decide(policy, state.preferred, now - state.ts, state.scores, capped)
    if answer is None:
        return None
    state.answered = True
    name, version = answer.model.split("@") if answer.model else (None, None)
    return Result(request_id=request_id, score=answer.score, model=name,
                  version=int(version) if version else None, rule=answer.rule,
                  latency_ms=round(now - state.ts, 3), candidates=dict(state.scores),
                  canary=canary_comparison(policy, answer, state.scores), policy_version=policy.version)
