"""The whole embedded system as `scorestream up` runs it: every request answered once, the cascade and the
default take over when workers die. Its own broker and home: `up` and `down` are under test too."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from scorestream import kafka, stack
from scorestream.client import assigned_consumer
from scorestream.contract import Request, Result
from scorestream.load import run_load
from scorestream.synthetic import TransactionGenerator
from scorestream.process import ManagedProcess, command_line, tree
from scorestream.settings import JVM_GC_ARGS, StackSettings
from scorestream.topics import TopicRegistry
from scorestream.ports import free_port
from tests.capacity import busy_during, judge_latency

POLICY = """\
version: 1
sla_ms: 400
canary: fraud_lr@1
arms:
  - model: fraud_xgb@3
fallback:
  - after_ms: 150
    use: [fraud_xgb@2]
  - after_ms: 250
    use: [fraud_lr@1]
default: {score: 0.0}
"""
MARGIN_MS = 250      # timer lateness + the results hop on a loaded 2-core machine; measured figures in docs


def at_the_sla(latencies_ms) -> bool:
    """Answered by the SLA (400 ms) plus the margin: 95 % of them. A shared host stalls the odd answer for longer
    (692 ms once, on a host at half its speed); how late the slowest come is a benchmark's figure, not a test's."""
    return float(np.percentile(latencies_ms, 95)) < 400 + MARGIN_MS


def system_home(tmp_path_factory, name: str):
    """A home of its own with POLICY and free ports: (home, policy file, broker port, cli), where
    cli(*args, timeout=300, env=None) runs `scorestream` there (env: more environment variables)."""
    home = tmp_path_factory.mktemp(name)
    policy = home / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port(2)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
        "SCORESTREAM_HOME": str(home), "SCORESTREAM_KAFKA_PORT": str(port),
        "SCORESTREAM_METRICS_PORT_BASE": str(random.randrange(20000, 30000, 10))}

    def cli(*args, timeout=300, env=None):
        return subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=base | (env or {}),
                              capture_output=True, text=True, timeout=timeout)
    return home, policy, port, cli


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    home, policy, port, cli = system_home(tmp_path_factory, "system")
    # 30 s of warm-up at most, not 60: on a busy host it never gets steady and spends all of its budget (make
    # test's 15 minutes); the phases below judge latency with the host's load (tests/capacity.py)
    started = cli("up", "--policy", str(policy), "--warm-up", "30")
    assert started.returncode == 0, started.stdout + started.stderr
    # `up` returns after its warm-up (the preferred model answered, then rounds of traffic), not before
    assert "warmed up in" in started.stdout or "warm-up stopped after" in started.stdout, started.stdout
    bootstrap = f"127.0.0.1:{port}"
    registry = TopicRegistry.load(prefix="")
    yield home, bootstrap, registry
    stopped = cli("down")
    assert stopped.returncode == 0 and "kafka" in stopped.stdout


def load(system, count, rate=50.0, drain_s=10.0):
    """The load's report, and how busy the host's CPUs were meanwhile (for judge_latency)."""
    home, bootstrap, registry = system
    return busy_during(lambda: run_load(registry.name("requests"), registry.name("results"), rate, count / rate,
                                        400, bootstrap, seed=random.randrange(10**6), drain_s=drain_s))


def test_every_jvm_of_the_system_runs_the_collectors_pause_goal(system):
    home, _, _ = system
    settings = StackSettings(home=home)
    jvms = {name: [c for c in map(command_line, tree(pid)) if c and c[0].endswith("java")]
            for name, pid in stack.pids(settings).items()}
    assert {name for name, found in jvms.items() if found} >= {"kafka", "flink.extract", "flink.rendezvous"}, jvms
    for name, found in jvms.items():
        for args in found:
            assert all(a in args for a in JVM_GC_ARGS), f"{name}: {args}"


def test_a_bad_payload_is_answered_rejected_at_once(system):
    """20 requests with ids but bad payloads among 200 good ones: each bad one answered once, as rejected (by the
    rejection path, not by the default at the SLA), with its reason; the good ones as usual. How soon: a benchmark
    measures it (docs/benchmarks.md), a test on a shared machine does not."""
    home, bootstrap, registry = system
    answers = assigned_consumer(registry.name("results"), bootstrap)
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    got: dict[str, list[tuple[Result, float]]] = {}

    def read(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for msg in kafka.consume_ready(answers, 1000, 0.005):
                result = Result.from_json(msg.value())
                got.setdefault(result.request_id, []).append((result, time.time() * 1000))

    # a new producer's first records wait for its producer id, a new consumer's first fetches are slow: not the
    # system's time (run_load has a lead-in for the same reason)
    kafka.produce(producer, registry.name("requests"), Request("lead-in", int(time.time() * 1000), {}).to_record())
    producer.flush(10)
    read(2.0)
    sent: dict[str, int] = {}
    bad: set[str] = set()
    for i, sample in enumerate(TransactionGenerator(random.randrange(10**6)).batch(220)):
        payload = sample.payload if i % 11 != 5 else dict(sample.payload, amount="x")
        request = Request(uuid.uuid4().hex, int(time.time() * 1000), payload)
        if payload is not sample.payload:
            bad.add(request.request_id)
        sent[request.request_id] = request.ts
        kafka.produce(producer, registry.name("requests"), request.to_record())
        producer.poll(0)
        read(0.01)
    producer.flush(10)
    for _ in range(30):
        if set(got) >= set(sent):
            break
        read(1.0)
    read(1.0)                                   # would a second answer come? wait and see
    answers.close()
    assert len(bad) == 20 and set(got) >= set(sent)
    assert all(len(got[rid]) == 1 for rid in sent), "each request is answered once"
    rejected = {rid: got[rid][0] for rid in sent if got[rid][0][0].rule == "rejected"}
    assert set(rejected) == bad, "the bad ones, and only they, are rejected: none answered by the default"
    for rid, (result, received) in rejected.items():
        assert (result.score, result.model) == (None, None)
        assert result.error == {"stage": "extract", "reason": "payload field 'amount' must be a number, got str",
                                "field": "payload.amount"}
    print("rejected after (ms):", sorted(round(received - sent[rid]) for rid, (_, received) in rejected.items()))


def test_every_request_one_answer_then_cascade_then_default(system):
    home = system[0]
    healthy, busy = load(system, 300)
    assert (healthy.answered, healthy.duplicates) == (300, 0)
    assert healthy.canary_deltas, "the canary is compared on answers"
    # most by the preferred model, the rest by the cascade: who answers is a matter of latency, judged as such
    judge_latency(healthy.by_rule.get("preferred", 0) > 150, healthy, busy)
    judge_latency(at_the_sla(healthy.latencies_ms), healthy, busy)

    ManagedProcess("score.fraud_xgb@3", home).stop()
    fallback, busy = load(system, 100)
    assert (fallback.answered, fallback.duplicates) == (100, 0)
    assert "preferred" not in fallback.by_rule
    judge_latency(fallback.by_rule.get("fallback@150ms", 0) > 50, fallback, busy)
    judge_latency(at_the_sla(fallback.latencies_ms), fallback, busy)

    for ref in ("fraud_xgb@2", "fraud_lr@1"):
        ManagedProcess(f"score.{ref}", home).stop()
    default, busy = load(system, 150)          # enough that one stall of a shared host (a few answers late) does not decide p95
    assert (default.answered, default.duplicates) == (150, 0)
    assert default.by_rule == {"default": 150}
    judge_latency(at_the_sla(default.latencies_ms), default, busy)
