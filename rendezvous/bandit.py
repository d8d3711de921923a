"""Thompson sampling over the policy's arms, with a cap on each arm's share.

Each model keeps a Beta posterior. An outcome rewards every model that scored
the request (they all did: the rendezvous architecture's gift to a bandit)
with the Bernoulli trick for a score in [0, 1]: success weight 1 - |label - score|.
A new arm is held to its `max_share` of recent choices so it starts slowly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rendezvous.policy import Policy

SHARE_HALF_LIFE = 500.0      # choices: how far back "recent share" looks


@dataclass
class Posterior:
    alpha: float = 1.0
    beta: float = 1.0

    def update(self, label: int, score: float) -> None:
        error = min(1.0, abs(label - score))
        self.alpha += 1.0 - error
        self.beta += error


@dataclass
class Bandit:
    posteriors: dict[str, Posterior] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)      # decayed count of choices per arm
    rng: random.Random = field(default_factory=random.Random)

    def choose(self, policy: Policy) -> str:
        """The preferred arm for one request."""
        total = sum(self.shares.get(a.model, 0.0) for a in policy.arms)
        draws = sorted(((self.rng.betavariate(p.alpha, p.beta), arm)
                        for arm in policy.arms for p in [self.posteriors.setdefault(arm.model, Posterior())]),
                       key=lambda d: d[0], reverse=True)
        chosen = next((arm for _, arm in draws
                       if arm.max_share >= 1.0 or total < 1.0
                       or self.shares.get(arm.model, 0.0) / total < arm.max_share), draws[-1][1])
        decay = 1.0 - 1.0 / SHARE_HALF_LIFE
        for arm in policy.arms:
            self.shares[arm.model] = self.shares.get(arm.model, 0.0) * decay + (arm is chosen)
        return chosen.model

    def reward(self, scores: dict[str, float], label: int) -> None:
        for model, score in scores.items():
            self.posteriors.setdefault(model, Posterior()).update(label, score)
