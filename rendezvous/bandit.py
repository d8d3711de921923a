"""Thompson sampling over the policy's arms, learning from every outcome, with a cap on each arm's answers.

The learning rule (plain Python, unit-tested without Flink):
- Every model keeps a Beta(alpha, beta) posterior, prior Beta(1, 1).
- An outcome (label 0|1) rewards *every* model that scored its request (they
  all did: the rendezvous architecture's gift to a bandit), not only the one
  that answered, with the Bernoulli trick for a score in [0, 1]: success
  weight r = 1 - (label - score)^2, failure weight 1 - r. The posterior mean
  thus tracks 1 - the Brier score of the model on recent outcomes (Brier is a
  proper scoring rule: a model cannot gain by saying 0 to a rare fraud).
- Forgetting: before each update the evidence shrinks towards the prior by the
  policy's `discount` (per outcome): alpha <- 1 + discount * (alpha - 1) + r,
  and the same for beta. Evidence is thus capped at 1 / (1 - discount)
  outcomes and a change of the world is followed within a few times that.
  discount 1.0 keeps everything (the posterior only sharpens).

Caps: an arm with `max_share` gives at most that share of the last
ANSWER_WINDOW answers, whichever rule answered (preferred or cascade): it is
not preferred, and the cascade skips it, while one more answer would pass the
cap.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from rendezvous.policy import Policy

PRIOR = 1.0                 # alpha and beta of the prior Beta(1, 1)
ANSWER_WINDOW = 1000        # answers over which max_share holds


def reward(label: int, score: float) -> float:
    """Success weight of one outcome for one model's score: 1 - squared error, in [0, 1]."""
    error = label - min(1.0, max(0.0, score))
    return 1.0 - error * error


@dataclass
class Posterior:
    alpha: float = PRIOR
    beta: float = PRIOR

    def update(self, label: int, score: float, discount: float = 1.0) -> None:
        r = reward(label, score)
        self.alpha = PRIOR + discount * (self.alpha - PRIOR) + r
        self.beta = PRIOR + discount * (self.beta - PRIOR) + (1.0 - r)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def evidence(self) -> float:
        """Outcomes' worth of evidence it holds (at most 1 / (1 - discount))."""
        return self.alpha + self.beta - 2 * PRIOR


def learn(posteriors: dict[str, Posterior], scores: dict[str, float], label: int, discount: float) -> None:
    """One outcome: every model that scored the request learns from it."""
    for model, score in scores.items():
        posteriors.setdefault(model, Posterior()).update(label, score, discount)


@dataclass
class Bandit:
    posteriors: dict[str, Posterior] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    recent: deque = field(default_factory=lambda: deque(maxlen=ANSWER_WINDOW))   # who gave the last answers
    counts: Counter = field(default_factory=Counter)                            # of `recent`

    def choose(self, policy: Policy) -> str:
        """The preferred arm for one request: the best draw among the arms under their cap."""
        capped = self.capped(policy)
        draws = sorted(((self.rng.betavariate(p.alpha, p.beta), arm.model) for arm in policy.arms
                        for p in [self.posteriors.get(arm.model) or Posterior()]), reverse=True)
        # every arm capped: the best draw is preferred anyway, and the cascade answers in its place
        return next((model for _, model in draws if model not in capped), draws[0][1])

    def capped(self, policy: Policy) -> frozenset[str]:
        """Arms that may not answer now: one more answer would pass their max_share of the window."""
        return frozenset(a.model for a in policy.arms
                         if a.max_share < 1.0 and self.counts[a.model] + 1 > a.max_share * ANSWER_WINDOW)

    def answered(self, model: str | None) -> None:
        """Count an answer (model None: the default) in the window the caps hold over."""
        if len(self.recent) == self.recent.maxlen:
            self.counts[self.recent[0]] -= 1
        self.recent.append(model)
        self.counts[model] += 1

    def use(self, posteriors: dict[str, tuple[float, float]]) -> None:
        """Take the learner's latest posteriors (model -> (alpha, beta))."""
        self.posteriors = {m: Posterior(a, b) for m, (a, b) in posteriors.items()}
