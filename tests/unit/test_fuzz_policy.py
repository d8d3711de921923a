"""Fuzzed policy files: a Policy the rendezvous can run (finite deadlines that fit Flink's timers), or a
PolicyError naming the line, never any other exception."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from rendezvous.policy import DEFAULT_PATH, Policy, PolicyError
from tests.fuzzing import documents, fuzz, json_value

pytestmark = pytest.mark.timeout(120)

TEXT = DEFAULT_PATH.read_text()
models = st.sampled_from(["fraud_xgb@3", "fraud_lr@1", "m@x", "@1", "a@1@2", ""])
numbers = st.sampled_from(["nan", ".nan", "inf", "-.inf", "1e308", "-1", "0", "1_000", "0x10", "30", "60.5"]) \
    | st.floats() | st.integers()
POLICY_FIELDS = {
    "version": numbers, "sla_ms": numbers,
    "arms": st.lists(documents({"model": models, "max_share": numbers}), max_size=3),
    "fallback": st.lists(documents({"after_ms": numbers, "use": st.lists(models, max_size=3)}), max_size=3),
    "default": documents({"score": numbers}), "canary": models, "extractor": st.text(max_size=6),
    "outcome_horizon_s": numbers, "discount": numbers,
}


def check(policy: Policy) -> None:
    """What the rendezvous does with a policy in force must work: timers are finite 64-bit integers."""
    assert policy.arms and all(0 < a.max_share <= 1 for a in policy.arms)
    for value in (policy.sla_ms, policy.default_score, policy.outcome_horizon_s, *policy.deadlines_ms):
        assert math.isfinite(value)
    assert all(-2**63 < int(1.8e12 + d) < 2**63 for d in policy.deadlines_ms + (policy.outcome_horizon_s * 1000,))
    assert Policy.from_dict(policy.to_dict()) == policy       # `promote --undo` puts it back as it was


def parse(text: str) -> None:
    try:
        policy = Policy.from_yaml(text)
    except PolicyError as exc:
        assert exc.line is None or 1 <= exc.line <= len(text.splitlines()) + 1, exc
        return
    check(policy)


@fuzz(400)
@given(text=st.text(max_size=200))
@example("? [a]\n: 1\n")                     # a key that is not a scalar
@example("&a [*a]")
@example("version: 1\nsla_ms: nan\narms: [{model: m@1}]\ndefault: {score: 0}\n")
@example("version: 1\nsla_ms: 1e300\narms: [{model: m@1}]\ndefault: {score: 0}\n")
def test_any_text_gives_a_policy_or_a_policy_error(text):
    parse(text)


@fuzz(250)
@given(doc=documents(POLICY_FIELDS) | json_value)
def test_near_valid_documents_give_a_runnable_policy_or_a_policy_error(doc):
    parse(yaml.safe_dump(doc))


@fuzz(400)
@given(at=st.integers(0, len(TEXT)), cut=st.integers(0, 40), insert=st.text(alphabet=":-[]{}#&*!|>'\"@ \n\t0123456789.",
                                                                             max_size=6))
def test_the_shipped_policy_mutated_gives_a_policy_or_a_policy_error(at, cut, insert):
    parse(TEXT[:at] + insert + TEXT[at + cut:])


@fuzz(200)
@given(doc=documents(POLICY_FIELDS))
def test_policy_documents_of_the_control_topic_give_a_policy_or_a_policy_error(doc):
    """What `promote` writes and the rendezvous reads back (Policy.from_dict on a JSON body)."""
    try:
        policy = Policy.from_dict(doc)
    except PolicyError:
        return
    check(policy)
