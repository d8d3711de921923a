import random

import pytest

from rendezvous.policy import DEFAULT_PATH, Arm, Fallback, Policy, PolicyError
from rendezvous.selection import canary_comparison, decide

GOOD = """\
version: 7
sla_ms: 100
canary: fraud_lr@1
arms:
  - model: fraud_xgb@3
    max_share: 0.10
  - model: fraud_xgb@2
fallback:
  - after_ms: 30
    use: [fraud_xgb@2]
  - after_ms: 60
    use: [fraud_lr@1]
default: {score: 0.0}
"""
KNOWN = {"fraud_lr@1", "fraud_xgb@2", "fraud_xgb@3"}


def test_design_example_parses():
    p = Policy.from_yaml(GOOD, KNOWN)
    assert p.version == 7 and p.sla_ms == 100 and p.canary == "fraud_lr@1"
    assert p.arms == (Arm("fraud_xgb@3", 0.1), Arm("fraud_xgb@2"))
    assert p.deadlines_ms == (30, 60, 100)
    assert Policy.from_dict(p.to_dict(), KNOWN) == p


def test_shipped_policy_is_valid():
    assert Policy.load(DEFAULT_PATH).models


@pytest.mark.parametrize("change,line,reason", [
    (("fraud_xgb@3", "fraud_xgb@9"), 5, "unknown model 'fraud_xgb@9'"),
    (("after_ms: 60", "after_ms: 20"), 11, "must be above 30"),
    (("after_ms: 60", "after_ms: 100"), 11, "below sla_ms 100"),
    (("default: {score: 0.0}", "default: {}"), 13, "default needs a score"),
    (("default: {score: 0.0}", ""), 1, "default is missing"),
    (("sla_ms: 100", "sla_ms: soon"), 2, "sla_ms must be a float"),
    (("fraud_xgb@2]", "fraud_xgb]"), 10, "not name@version"),
    (("max_share: 0.10", "max_share: 2"), 6, "max_share must be in"),
])
def test_invalid_policy_names_line_and_reason(change, line, reason):
    with pytest.raises(PolicyError) as exc:
        Policy.from_yaml(GOOD.replace(*change), KNOWN)
    assert exc.value.line == line and reason in str(exc.value)


def test_not_yaml():
    with pytest.raises(PolicyError, match="not YAML"):
        Policy.from_yaml("version: [1\n")


POLICY = Policy(1, 100, (Arm("m3@1"),), (Fallback(30, ("m2@1",)), Fallback(60, ("m1@1",))), -1.0, canary="m1@1")


@pytest.mark.parametrize("elapsed,scores,expected", [
    (1, {"m3@1": 0.9}, ("m3@1", "preferred")),
    (1, {"m2@1": 0.5, "m1@1": 0.1}, None),
    (29.9, {"m2@1": 0.5}, None),
    (30, {"m2@1": 0.5, "m1@1": 0.1}, ("m2@1", "fallback@30ms")),
    (45, {"m1@1": 0.1}, None),
    (60, {"m1@1": 0.1}, ("m1@1", "fallback@60ms")),
    (60, {"m1@1": 0.1, "m3@1": 0.7}, ("m3@1", "preferred")),
    (99, {}, None),
    (100, {}, (None, "default")),
    (100, {"unknown@1": 0.3}, (None, "default")),
])
def test_cascade(elapsed, scores, expected):
    answer = decide(POLICY, "m3@1", elapsed, scores)
    assert (answer and (answer.model, answer.rule)) == expected


def test_default_score_and_canary_delta():
    answer = decide(POLICY, "m3@1", 100, {})
    assert answer.score == -1.0
    answer = decide(POLICY, "m3@1", 5, {"m3@1": 0.8, "m1@1": 0.5})
    assert canary_comparison(POLICY, answer, {"m3@1": 0.8, "m1@1": 0.5}) == {"score": 0.5, "delta": pytest.approx(0.3)}
    assert canary_comparison(POLICY, answer, {"m3@1": 0.8}) is None


def test_up_refuses_an_invalid_policy_before_starting_anything(tmp_path):
    import os
    import subprocess
    import sys
    bad = tmp_path / "policy.yaml"
    bad.write_text(GOOD.replace("after_ms: 60", "after_ms: 20"))
    done = subprocess.run([sys.executable, "-m", "scorestream.cli", "up", "--policy", str(bad)],
                          env=os.environ | {"SCORESTREAM_HOME": str(tmp_path / "home")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "policy line 11" in done.stderr and "must be above 30" in done.stderr
    assert not (tmp_path / "home" / "run").exists()      # nothing was started


def test_a_policy_without_canary_round_trips():
    policy = Policy.from_yaml("version: 1\nsla_ms: 100\narms: [{model: a@1}]\ndefault: {score: 0}\n")
    assert Policy.from_dict(policy.to_dict()) == policy and policy.canary is None
