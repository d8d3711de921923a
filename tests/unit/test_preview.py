"""promote --preview's what-if, and replay's grades, without a broker."""

import math
import random

import pytest

from decoy.replay import grades
from rendezvous.bandit import Bandit
from rendezvous.policy import Arm, Fallback, Policy
from rendezvous.preview import Answers, answer

POLICY = Policy(2, 100, (Arm("m3@1"),), (Fallback(30, ("m2@1",)),), 0.0, canary="m1@1")


def test_answers_when_the_new_policy_would_have():
    bandit = Bandit(rng=random.Random(1))
    chosen, at, canary = answer(POLICY, bandit, {"m3@1": (12.0, 0.7), "m1@1": (5.0, 0.2)})
    assert (chosen.model, chosen.rule, at) == ("m3@1", "preferred", 12.0) and canary["delta"] == pytest.approx(0.5)
    chosen, at, _ = answer(POLICY, bandit, {"m3@1": (80.0, 0.7), "m2@1": (20.0, 0.4)})
    assert (chosen.model, chosen.rule, at) == ("m2@1", "fallback@30ms", 30)
    chosen, at, canary = answer(POLICY, bandit, {"m3@1": (150.0, 0.7)})
    assert (chosen.model, chosen.rule, at, canary) == (None, "default", 100, None)


def test_a_cap_holds_in_the_preview_too():
    policy = Policy(3, 100, (Arm("m3@1", max_share=0.2), Arm("m2@1")), (), 0.0)
    bandit, served = Bandit(rng=random.Random(2)), Answers()
    bandit.use({"m3@1": (900.0, 10.0), "m2@1": (10.0, 900.0)})          # m3 is far better, but capped
    for _ in range(3000):
        chosen, at, canary = answer(policy, bandit, {"m3@1": (10.0, 0.5), "m2@1": (10.0, 0.5)})
        served.add(chosen.model, chosen.rule, at, canary)
    assert served.share(served.by_model, "m3@1") <= 0.2 and served.latency(0.5) == 10.0


def test_grades():
    g = grades([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert g["auc"] == 1.0 and g["brier"] == pytest.approx((0.01 + 0.04 + 0.01 + 0.04) / 4) and g["n"] == 4
    assert math.isnan(grades([0.3, 0.4], [0, 0])["auc"])                 # one class: no AUC, still Brier
