"""The learning rule without Flink: posterior updates, forgetting, caps on answers, the outcome join."""

import random

import pytest

from rendezvous.bandit import ANSWER_WINDOW, Bandit, Posterior, learn, reward
from rendezvous.core import RequestState, on_outcome, on_request, on_score, on_timer
from rendezvous.policy import Arm, Fallback, Policy
from rendezvous.selection import decide


def test_reward_is_one_minus_the_squared_error():
    assert reward(1, 1.0) == 1.0 and reward(0, 1.0) == 0.0
    assert reward(1, 0.5) == pytest.approx(0.75) and reward(0, 0.1) == pytest.approx(0.99)
    assert reward(1, 7.0) == 1.0 and reward(0, -3.0) == 1.0          # scores outside [0, 1] are clipped


def test_update_without_discount_adds_the_reward():
    p = Posterior()
    p.update(1, 0.5)
    assert (p.alpha, p.beta) == pytest.approx((1.75, 1.25))
    for _ in range(1000):
        p.update(0, 0.1)
    assert p.mean == pytest.approx(0.99, abs=0.002) and p.evidence == pytest.approx(1001)


def test_discount_caps_the_evidence_and_follows_a_change():
    p = Posterior()
    for _ in range(20_000):
        p.update(0, 0.0, discount=0.999)
    assert p.evidence == pytest.approx(1000, rel=1e-3)           # 1 / (1 - discount)
    assert p.mean > 0.99
    for _ in range(3000):                                         # the world changed: the same score is now wrong
        p.update(1, 0.0, discount=0.999)
    assert p.mean < 0.1
    kept = Posterior()
    for _ in range(20_000):
        kept.update(0, 0.0)
    for _ in range(3000):
        kept.update(1, 0.0)
    assert kept.mean > 0.8                                        # without discount the past outweighs the change


def test_discount_shrinks_towards_the_prior_not_to_zero():
    p = Posterior(50.0, 3.0)
    p.update(1, 1.0, discount=0.5)
    assert (p.alpha, p.beta) == pytest.approx((1 + 0.5 * 49 + 1, 1 + 0.5 * 2))


def test_every_model_that_scored_learns():
    posteriors = {"a@1": Posterior()}
    learn(posteriors, {"a@1": 0.9, "b@1": 0.2}, 1, discount=1.0)
    assert posteriors["a@1"].alpha == pytest.approx(1.99) and posteriors["b@1"].alpha == pytest.approx(1.36)


def test_thompson_prefers_the_better_model():
    policy = Policy(1, 100, (Arm("good@1"), Arm("bad@1")), (), 0.0)
    bandit = Bandit(rng=random.Random(1))
    rng = random.Random(2)
    for _ in range(300):
        label = int(rng.random() < 0.3)
        learn(bandit.posteriors, {"good@1": 0.9 if label else 0.1, "bad@1": 0.5}, label, 1.0)
    picks = [bandit.choose(policy) for _ in range(1000)]
    assert picks.count("good@1") > 950


def test_an_arm_without_outcomes_draws_from_the_prior_and_a_removed_arm_gets_nothing():
    bandit = Bandit(rng=random.Random(4))
    learn(bandit.posteriors, {"gone@1": 1.0}, 1, 1.0)
    policy = Policy(1, 100, (Arm("new@1"), Arm("other@1")), (), 0.0)
    picks = [bandit.choose(policy) for _ in range(2000)]
    assert "gone@1" not in picks and 0.4 < picks.count("new@1") / 2000 < 0.6


def _serve(bandit: Bandit, policy: Policy, n: int, scores: dict[str, float]) -> list[str | None]:
    """n requests answered at once with `scores` present: who answered each."""
    who = []
    for _ in range(n):
        preferred = bandit.choose(policy)
        answer = decide(policy, preferred, 50, scores, bandit.capped(policy))
        bandit.answered(answer.model)
        who.append(answer.model)
    return who


def test_max_share_bounds_answers_in_every_window():
    policy = Policy(1, 100, (Arm("new@1", max_share=0.1), Arm("old@1")), (), 0.0)
    bandit = Bandit(rng=random.Random(3))
    for _ in range(2000):
        learn(bandit.posteriors, {"new@1": 0.0, "old@1": 0.5}, 0, 1.0)     # the new arm looks far better
    who = _serve(bandit, policy, 5000, {"new@1": 0.0, "old@1": 0.5})
    windows = [who[i:i + ANSWER_WINDOW].count("new@1") for i in range(0, len(who) - ANSWER_WINDOW)]
    assert max(windows) <= 0.1 * ANSWER_WINDOW
    assert who.count("new@1") / len(who) > 0.09                         # and it gets its share


def test_max_share_holds_through_the_cascade():
    """The capped arm is the only fast one, and the cascade lists it: it still answers no more than its share."""
    policy = Policy(1, 100, (Arm("new@1", max_share=0.2), Arm("old@1")), (Fallback(30, ("new@1", "lr@1")),), 0.0)
    bandit = Bandit(rng=random.Random(5))
    for _ in range(2000):
        learn(bandit.posteriors, {"new@1": 0.0, "old@1": 0.9}, 0, 1.0)
    who = _serve(bandit, policy, 5000, {"new@1": 0.0, "lr@1": 0.3})     # old@1 never scored in time
    windows = [who[i:i + ANSWER_WINDOW].count("new@1") for i in range(0, len(who) - ANSWER_WINDOW)]
    assert max(windows) <= 0.2 * ANSWER_WINDOW
    assert set(who) == {"new@1", "lr@1"}


POLICY = Policy(1, 100, (Arm("m3@1"),), (), 0.0, outcome_horizon_s=30)


def test_outcome_joins_every_score_once_and_later_scores_when_they_come():
    state = RequestState()
    on_request(state, "r", 1000, "m3@1", POLICY, 1000)
    assert on_score(state, "r", "m3@1", 0.8, POLICY, 1010).result is not None
    assert on_score(state, "r", "m1@1", 0.3, POLICY, 1020).event == "late_score"    # kept for the outcome
    step = on_outcome(state, 1)
    assert step.reward == ({"m3@1": 0.8, "m1@1": 0.3}, 1) and step.store
    assert on_outcome(state, 1).event == "duplicate_outcome" and on_outcome(state, 0).reward is None
    assert on_score(state, "r", "m2@1", 0.6, POLICY, 1500).reward == ({"m2@1": 0.6}, 1)
    assert on_score(state, "r", "m2@1", 0.6, POLICY, 1600).reward is None             # duplicate: no reward


def test_state_lives_until_the_horizon_then_goes():
    state = RequestState()
    on_request(state, "r", 1000, "m3@1", POLICY, 1000)
    step = on_score(state, "r", "m3@1", 0.8, POLICY, 1010)
    assert step.timers == (1000 + 30_000,)
    assert on_timer(state, "r", POLICY, 31_000).clear
    short = Policy(1, 100, (Arm("m3@1"),), (), 0.0, outcome_horizon_s=1)
    state = RequestState()
    on_request(state, "r", 1000, "m3@1", short, 1000)
    assert on_score(state, "r", "m3@1", 0.8, short, 1010).timers == (1000 + 100 + 10_000,)   # the grace period
