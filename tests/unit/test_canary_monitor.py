"""The monitor's logic without Kafka: bad records counted, rejections left out, drift and SLO alerts fired once
and resolved, nothing repeated after a restart."""

from __future__ import annotations

import numpy as np
import orjson

from canary.monitor import CanarySettings, Monitor

CANARY, A, B = "fraud_lr@1", "fraud_xgb@2", "fraud_xgb@3"
SETTINGS = CanarySettings(window_s=1.0, grace_s=0.1, reference_windows=3, min_count=50, burn_threshold=10,
                          short_windows=1, long_windows=6)


class Clock:
    def __init__(self):
        self.now = 1_700_000_000_000.0

    def __call__(self) -> float:
        return self.now


def score(rid: str, ref: str, value, at: float) -> bytes:
    name, version = ref.split("@")
    return orjson.dumps({"request_id": rid, "model": name, "version": int(version), "role": "candidate",
                         "score": value, "worker": "w", "received_at": at, "scored_at": at, "extractor": "txn@1"})


def result(rule: str, latency: float, candidates: dict, score=0.1) -> bytes:
    return orjson.dumps({"request_id": "x", "score": score, "model": None, "version": None, "rule": rule,
                         "latency_ms": latency, "candidates": candidates, "canary": None, "policy_version": 1})


def monitor(tmp_path=None) -> tuple[Monitor, Clock]:
    clock = Clock()
    state = tmp_path / "refs.json" if tmp_path else None
    return Monitor(SETTINGS, CANARY, {CANARY, A, B}, {CANARY, A, B}, 100.0, state, clock), clock


def run_window(mon: Monitor, clock: Clock, rng, n=400, shift=0.0, broken: str | None = None,
               results: list[bytes] = ()) -> list:
    """One second of traffic: every model scores n requests; then the window closes."""
    start = clock.now
    for i in range(n):
        at = start + i * (1000.0 / n)
        base = float(np.clip(rng.beta(2, 20) + shift, 0, 1))
        rid = f"{start}-{i}"
        mon.on_score(score(rid, CANARY, base, at))
        for ref in (A, B):
            s = float(rng.uniform(0, 1)) if ref == broken else float(np.clip(base + rng.normal(0, 0.01), 0, 1))
            mon.on_score(score(rid, ref, s, at))
    for r in results:
        mon.on_result(r, start + 500)
    clock.now = start + 1000 + 150
    alerts = mon.tick()
    clock.now = start + 1000
    return alerts


def test_bad_scores_are_counted_and_never_crash():
    mon, clock = monitor()
    for value in (b"not json", b"{}", score("r", CANARY, 1.5, clock.now), score("r", CANARY, float("nan"), clock.now),
                  score("r", "nope@9", 0.5, clock.now), score("r", CANARY, "0.5", clock.now), None, b"[1, 2]"):
        mon.on_score(value)
    assert mon.bad == {"malformed": 4, "out_of_range": 1, "not_a_number": 2, "unknown_model": 1}


def test_a_swap_token_among_the_scores_is_neither_a_score_nor_bad():
    from scorestream.swap import token_record
    mon, _ = monitor()
    mon.on_score(token_record("rendezvous", "d-old", "d-new", "u1").value)
    assert mon.bad == {}


def test_stationary_traffic_raises_nothing_and_a_shift_raises_drift_within_a_window():
    mon, clock = monitor()
    rng = np.random.default_rng(0)
    alerts = [a for _ in range(30) for a in run_window(mon, clock, rng)]
    assert alerts == []
    assert {"scores:fraud_lr@1", "delta:fraud_xgb@2"} <= set(mon.references)
    shifted = run_window(mon, clock, rng, shift=0.1)
    assert {(a.alert, a.model) for a in shifted} >= {("canary_drift", CANARY), ("model_drift", A), ("model_drift", B)}
    assert all(a.state == "firing" and a.runbook.startswith("docs/runbook.md#") for a in shifted)
    assert run_window(mon, clock, rng, shift=0.1) == []                    # no repeat while firing
    run_window(mon, clock, rng)
    resolved = run_window(mon, clock, rng)                                  # two clean windows
    assert {a.state for a in resolved} == {"resolved"}
    assert {(a.alert, a.model) for a in resolved} == {(a.alert, a.model) for a in shifted}


def test_a_broken_model_raises_canary_delta_for_itself_alone():
    mon, clock = monitor()
    rng = np.random.default_rng(1)
    for _ in range(4):
        assert run_window(mon, clock, rng) == []
    alerts = run_window(mon, clock, rng, broken=B)
    deltas = [(a.alert, a.model) for a in alerts if a.alert == "canary_delta"]
    assert deltas == [("canary_delta", B)]
    assert not any(a.alert == "canary_drift" for a in alerts)


def test_a_model_broken_from_its_start_is_caught_by_the_absolute_delta_guard():
    mon, clock = monitor()
    alerts = run_window(mon, clock, np.random.default_rng(2), broken=A)
    assert [(a.alert, a.model) for a in alerts] == [("canary_delta", A)]


def test_default_answers_burn_the_budget_and_rejections_count_for_nothing():
    mon, clock = monitor()
    rng = np.random.default_rng(3)
    healthy = [result("preferred", 20, {CANARY: 0.1, A: 0.1, B: 0.1})] * 200
    rejected = [result("rejected", 1, {}, score=None)] * 100
    for _ in range(3):
        assert run_window(mon, clock, rng, results=healthy + rejected) == []
    stopped = [result("default", 100, {})] * 200
    alerts = run_window(mon, clock, rng, results=stopped)
    assert [(a.alert, a.model) for a in alerts] == [("default_answers", "*")]     # 100 % now and 25 % over 4 windows
    assert alerts[0].kind == "slo" and alerts[0].severity == "page" and alerts[0].value >= 10
    later = [a for _ in range(3) for a in run_window(mon, clock, rng, results=stopped)]
    assert {(a.alert, a.model) for a in later} == {("model_late", m) for m in (CANARY, A, B)}  # 5 % budget: slower


def test_a_restarted_monitor_repeats_no_firing_alert_and_keeps_its_references(tmp_path):
    mon, clock = monitor(tmp_path)
    rng = np.random.default_rng(4)
    for _ in range(4):
        run_window(mon, clock, rng)
    fired = run_window(mon, clock, rng, shift=0.1)
    assert fired
    again, clock2 = monitor(tmp_path)
    clock2.now = clock.now
    again.restore(fired)
    assert set(again.references) == set(mon.references)
    assert run_window(again, clock2, rng, shift=0.1) == []


def test_every_alert_links_to_a_runbook_section():
    from pathlib import Path

    from canary.alerts import runbook_link

    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    for alert in ("canary_delta", "model_drift", "canary_drift", "default_answers", "sla", "model_late"):
        assert f"\n## {runbook_link(alert).split('#')[1]}\n" in runbook, alert
