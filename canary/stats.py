"""Drift statistics on KLL sketches: the Kolmogorov–Smirnov distance and thresholds learnt from a reference.

A window's scores go into a KLL sketch (Apache DataSketches): mergeable, a few KiB,
with a known rank error (~1.3 % at k=200), which is exactly the scale a KS distance
lives on. `ks_distance` reads both sketches' CDFs at the union of their quantiles;
datasketches' own ks_test only answers yes/no at a p-value, and at thousands of
requests per window a p-value flags everything.

A threshold comes from the reference's own window-to-window variation: each reference
window against the pooled others (leave one out); the largest such distance, times a
multiplier, never below a floor (the sketches' rank error plus sampling noise).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a, b = sketch(rng.uniform(0, 1, 5000)), sketch(rng.uniform(0, 1, 5000))
>>> ks_distance(a, b) < 0.05
True
>>> round(ks_distance(sketch([0.1] * 100), sketch([0.9] * 100)), 2)
1.0
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from datasketches import kll_floats_sketch

K = 200                      # KLL accuracy parameter: normalized rank error ~1.3 % (single-sided)
_RANKS = np.linspace(0.0, 1.0, 257)


def sketch(values: Iterable[float] = ()) -> kll_floats_sketch:
    s = kll_floats_sketch(K)
    values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float32)
    if values.size:
        s.update(values)
    return s


def merged(sketches: Iterable[kll_floats_sketch]) -> kll_floats_sketch:
    out = kll_floats_sketch(K)
    for s in sketches:
        if not s.is_empty():
            out.merge(s)
    return out


def ks_distance(a: kll_floats_sketch, b: kll_floats_sketch) -> float:
    """sup |F_a(x) - F_b(x)| over the union of both sketches' quantiles; NaN when either is empty."""
    if a.is_empty() or b.is_empty():
        return math.nan
    points = np.unique(np.concatenate([a.get_quantiles(_RANKS), b.get_quantiles(_RANKS)]))
    fa = np.asarray(a.get_cdf(points, True)[:-1])
    fb = np.asarray(b.get_cdf(points, True)[:-1])
    return float(np.max(np.abs(fa - fb)))


def share_beyond(s: kll_floats_sketch, limit: float) -> float:
    """Share of values with |x| > limit (for a sketch of deltas); NaN when empty."""
    if s.is_empty():
        return math.nan
    at_most_minus, at_most_plus, _ = s.get_cdf([-limit, limit], True)
    return float(at_most_minus + 1.0 - at_most_plus)


def to_b64(s: kll_floats_sketch) -> str:
    return base64.b64encode(s.serialize()).decode()


def from_b64(text: str) -> kll_floats_sketch:
    return kll_floats_sketch.deserialize(base64.b64decode(text))


@dataclass(frozen=True)
class Reference:
    """A pinned distribution and the distance beyond which a window is said to differ from it."""

    sketch: kll_floats_sketch
    threshold: float
    spread: tuple[float, ...]        # each reference window's distance to the pooled others

    def distance(self, window: kll_floats_sketch) -> float:
        return ks_distance(window, self.sketch)

    def threshold_for(self, window: kll_floats_sketch) -> float:
        """The learnt threshold, raised to the sampling noise of a window this small if need be."""
        return max(self.threshold, noise_threshold(window.n, self.sketch.n))

    def to_dict(self) -> dict:
        return {"sketch": to_b64(self.sketch), "threshold": self.threshold, "spread": list(self.spread)}

    @classmethod
    def from_dict(cls, doc: dict) -> "Reference":
        return cls(from_b64(doc["sketch"]), float(doc["threshold"]), tuple(doc.get("spread", ())))


NOISE_C = 2.47              # two-sample KS critical coefficient at alpha = 1e-5: sqrt(-ln(alpha / 2) / 2)


def noise_threshold(n: int, m: int) -> float:
    """The KS distance that sampling alone exceeds with probability 1e-5, for samples of n and m, plus the
    rank error of both sketches. A floor under thresholds learnt from few reference windows, not a test:
    at thousands of values per window it is far below what the world's own variation asks for.

    >>> round(noise_threshold(400, 1200), 3), round(noise_threshold(5000, 25000), 3)
    (0.169, 0.065)
    """
    if not n or not m:
        return math.inf
    return NOISE_C * math.sqrt((n + m) / (n * m)) + 2 * kll_floats_sketch.get_normalized_rank_error(K, False)


def save_references(references: dict[str, Reference], path: Path) -> None:
    """Written whole, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: r.to_dict() for k, r in references.items()}))
    tmp.replace(path)


def load_references(path: Path) -> dict[str, Reference]:
    return {k: Reference.from_dict(v) for k, v in json.loads(path.read_text()).items()}


def build_reference(windows: Sequence[kll_floats_sketch], floor: float, multiplier: float) -> Reference:
    """The pooled windows, with a threshold of max(floor, multiplier x the largest leave-one-out distance).

    >>> rng = np.random.default_rng(1)
    >>> ref = build_reference([sketch(rng.beta(2, 8, 2000)) for _ in range(4)], floor=0.05, multiplier=2.0)
    >>> 0.05 <= ref.threshold < 0.15, ref.sketch.n
    (True, 8000)
    """
    if len(windows) < 2:
        raise ValueError("a reference needs at least two windows to measure their variation")
    spread = tuple(ks_distance(w, merged(o for j, o in enumerate(windows) if j != i)) for i, w in enumerate(windows))
    return Reference(merged(windows), max(floor, multiplier * max(spread)), spread)


def burn_rate(bad: int, total: int, budget: float) -> float:
    """How many times faster than allowed the error budget burns: (bad / total) / budget; 0 without traffic.

    >>> burn_rate(5, 100, 0.01)
    5.0
    """
    return (bad / total) / budget if total else 0.0
