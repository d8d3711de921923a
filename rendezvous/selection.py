"""Choosing the one answer of a request: the preferred model, the deadline cascade, the default.

Plain Python, no Flink: the job calls `decide` whenever a score arrives and at
each deadline of the policy, and stops once it returns an answer.

>>> from rendezvous.policy import Arm, Fallback, Policy
>>> p = Policy(1, 100, (Arm("m3@1"),), (Fallback(30, ("m2@1",)), Fallback(60, ("m1@1",))), 0.0)
>>> decide(p, "m3@1", elapsed_ms=10, scores={"m2@1": 0.4}) is None    # m2 may not answer yet
True
>>> decide(p, "m3@1", elapsed_ms=30, scores={"m2@1": 0.4}).rule
'fallback@30ms'
>>> decide(p, "m3@1", elapsed_ms=100, scores={}).rule
'default'
"""

from __future__ import annotations

from dataclasses import dataclass

from rendezvous.policy import Policy


@dataclass(frozen=True)
class Answer:
    model: str | None          # name@version, None for the default
    score: float
    rule: str                  # preferred | fallback@<after>ms | default


def eligible(policy: Policy, preferred: str, elapsed_ms: float,
             capped: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(model, rule) in order of preference for a request this old; `capped` models (at their max_share of
    answers) may not answer at all."""
    out = [(preferred, "preferred")]
    for step in policy.fallback:
        if elapsed_ms >= step.after_ms:
            out += [(m, step.rule) for m in step.use if m != preferred]
    return [(m, rule) for m, rule in out if m not in capped]


def decide(policy: Policy, preferred: str, elapsed_ms: float, scores: dict[str, float],
           capped: frozenset[str] = frozenset()) -> Answer | None:
    """The answer now, or None to wait for more scores or the next deadline."""
    for model, rule in eligible(policy, preferred, elapsed_ms, capped):
        if model in scores:
            return Answer(model, scores[model], rule)
    if elapsed_ms >= policy.sla_ms:
        return Answer(None, policy.default_score, "default")
    return None


def canary_comparison(policy: Policy, answer: Answer, scores: dict[str, float]) -> dict[str, float] | None:
    """The canary's score and the answer's distance to it, when the canary has scored."""
    if policy.canary is None or policy.canary not in scores:
        return None
    reference = scores[policy.canary]
    return {"score": reference, "delta": answer.score - reference}
