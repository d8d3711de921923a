"""Drift statistics on sketches of known distributions: KS distances, thresholds, burn rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.stats import Reference, build_reference, burn_rate, ks_distance, merged, share_beyond, sketch


def exact_ks(a: np.ndarray, b: np.ndarray) -> float:
    xs = np.sort(np.concatenate([a, b]))
    return float(np.max(np.abs(np.searchsorted(np.sort(a), xs, "right") / a.size
                               - np.searchsorted(np.sort(b), xs, "right") / b.size)))


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_ks_distance_of_shifted_normals_matches_theory_and_the_exact_statistic(shift):
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 50_000), rng.normal(shift, 1, 50_000)
    expected = 2 * normal_cdf(shift / 2) - 1           # sup |Phi(x) - Phi(x - shift)|
    d = ks_distance(sketch(a), sketch(b))
    assert abs(d - expected) < 0.03                     # two sketches' rank error plus sampling
    assert abs(d - exact_ks(a, b)) < 0.03


def test_ks_distance_on_beta_scores_and_point_masses():
    rng = np.random.default_rng(2)
    low, high = rng.beta(1, 20, 20_000), rng.beta(5, 5, 20_000)
    assert ks_distance(sketch(low), sketch(high)) > 0.9
    assert ks_distance(sketch([0.0] * 500), sketch([0.0] * 300)) == 0.0    # defaults: many equal scores
    assert math.isnan(ks_distance(sketch(), sketch(low)))


def test_sketches_merge_like_the_pooled_data():
    rng = np.random.default_rng(3)
    parts = [rng.uniform(0, 1, 3000) for _ in range(5)]
    assert ks_distance(merged(sketch(p) for p in parts), sketch(np.concatenate(parts))) < 0.03
    assert merged(sketch(p) for p in parts).n == 15_000


def test_share_beyond_counts_both_tails():
    values = np.concatenate([np.full(700, 0.0), np.full(150, 0.5), np.full(150, -0.5)])
    assert share_beyond(sketch(values), 0.2) == pytest.approx(0.3, abs=0.02)


def test_threshold_from_stationary_windows_flags_no_stationary_window_and_every_shifted_one():
    rng = np.random.default_rng(4)
    draw = lambda shift=0.0: sketch(np.clip(rng.beta(2, 30, 1500) + shift, 0, 1))  # noqa: E731
    ref = build_reference([draw() for _ in range(5)], floor=0.05, multiplier=2.5)
    assert ref.threshold >= 0.05 and len(ref.spread) == 5
    false_alarms = sum(ref.distance(draw()) > ref.threshold for _ in range(200))
    assert false_alarms == 0
    assert all(ref.distance(draw(0.03)) > ref.threshold for _ in range(20))   # every score up by 0.03


def test_threshold_follows_the_reference_variation_with_a_floor():
    rng = np.random.default_rng(5)
    windows = [sketch(rng.uniform(0, 1, 20_000)) for _ in range(4)]
    steady = build_reference(windows, floor=0.05, multiplier=2.5)
    # Sampling noise plus two sketches' rank error: 0.016 median, 0.022 the largest in 1,000 builds (the KLL
    # sketch compacts at random, unseeded), so 2.5 times it may just pass the floor of 0.05.
    assert max(steady.spread) < 0.03
    assert steady.threshold == max(0.05, 2.5 * max(steady.spread))
    assert build_reference(windows, floor=0.1, multiplier=2.5).threshold == 0.1    # a floor above the noise holds
    wandering = build_reference([sketch(rng.uniform(0, 1, 2000) + 0.1 * i) for i in range(4)], 0.05, 2.5)
    assert wandering.threshold > 0.2                      # a reference that moves by itself tolerates more
    with pytest.raises(ValueError):
        build_reference([sketch([0.1])], 0.05, 2.0)


def test_reference_round_trips_through_json():
    rng = np.random.default_rng(6)
    ref = build_reference([sketch(rng.uniform(0, 1, 1000)) for _ in range(3)], 0.05, 2.0)
    back = Reference.from_dict(ref.to_dict())
    assert back.threshold == ref.threshold and back.sketch.n == ref.sketch.n
    assert ks_distance(back.sketch, ref.sketch) == 0.0


def test_burn_rate():
    assert burn_rate(0, 0, 0.01) == 0.0
    assert burn_rate(1, 100, 0.01) == pytest.approx(1.0)
    assert burn_rate(100, 100, 0.01) == pytest.approx(100.0)
