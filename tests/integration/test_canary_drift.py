"""The canary monitor (`scorestream canary`, faust) on the real broker, fed by real model workers.

One run in three phases, 2-second windows: stationary traffic (no drift alert), then a
redeploy of fraud_xgb@2 whose model is fed permuted features (a canary_delta alert for that
model alone), then traffic from a changed world (the canary's drift alert). Features are
computed here with the live extractor, as the extract job would: no Flink needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import helper, numpy_helper

from canary.alerts import read_alerts
from extractors import get_extractor
from models.registry import REGISTRY_DIR, sha256_of
from scorestream import kafka
from scorestream.contract import Features
from scorestream.process import cpu_seconds
from scorestream.synthetic import TransactionGenerator

WINDOW_S = 2.0
RATE = 300                   # requests per second
STATIONARY_S = int(os.environ.get("CANARY_TEST_STATIONARY_S", 50))   # after the reference windows
MODELS = [("fraud_lr@1", "canary"), ("fraud_xgb@2", "candidate"), ("fraud_xgb@3", "candidate")]


def permuted_registry(root: Path) -> Path:
    """A registry where fraud_xgb@2's model file reads its inputs in a shuffled order (a broken feature order)."""
    src, dst = REGISTRY_DIR / "fraud_xgb" / "2", root / "fraud_xgb" / "2"
    dst.mkdir(parents=True)
    model = onnx.load(src / "model.onnx")
    graph = model.graph
    name = graph.input[0].name
    width = graph.input[0].type.tensor_type.shape.dim[1].dim_value or 20
    graph.initializer.append(numpy_helper.from_array(np.random.default_rng(0).permutation(width).astype(np.int64),
                                                     "permutation"))
    for node in graph.node:
        node.input[:] = [f"{name}_permuted" if i == name else i for i in node.input]
    graph.node.insert(0, helper.make_node("Gather", [name, "permutation"], [f"{name}_permuted"], axis=1))
    model.opset_import.append(helper.make_opsetid("", 13))
    onnx.save(model, dst / "model.onnx")
    card = yaml.safe_load((src / "model.yaml").read_text())
    card["backend"]["sha256"] = sha256_of(dst / "model.onnx")
    card["description"] = "TEST ONLY: fraud_xgb@2 fed permuted features"
    (dst / "model.yaml").write_text(yaml.safe_dump(card))
    return root


class Traffic:
    """Features at a steady rate from a background thread; `shift` changes the world mid-run."""

    def __init__(self, topic: str):
        self.topic, self.shift, self.stop, self.sent = topic, False, threading.Event(), 0
        self.extractor = get_extractor("txn@1")
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        p, gen, start = kafka.producer(), TransactionGenerator(seed=int(time.time())), time.monotonic()
        while not self.stop.is_set():
            samples = gen.batch(RATE // 10)
            payloads = [s.payload for s in samples]
            if self.shift:      # a changed world: bigger amounts, at night, on new devices
                payloads = [pl | {"amount": pl["amount"] * 4, "local_hour": 2, "new_device": True,
                                  "card_present": False} for pl in payloads]
            now = int(time.time() * 1000)
            for s, x in zip(samples, self.extractor.extract_many(payloads).tolist()):
                kafka.produce(p, self.topic, Features(s.request_id, now, "txn@1", tuple(x)).to_record())
            p.poll(0)
            self.sent += len(samples)
            ahead = start + self.sent / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        p.flush(10)


@pytest.fixture
def procs(cli_env, tmp_path):
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"{name}-{len(started)}.log", "w")
        p = subprocess.Popen([sys.executable, "-m", "scorestream.cli", *args], env=env or cli_env,
                             stdout=log, stderr=subprocess.STDOUT, text=True)
        p.log_path = log.name
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_for_log(p, words: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while words not in open(p.log_path).read():
        assert p.poll() is None and time.monotonic() < deadline, open(p.log_path).read()[-3000:]
        time.sleep(0.1)


def window_of(ms: float) -> float:
    return ms - ms % (WINDOW_S * 1000)


def delay_in_windows(first_seen_ms: int, fault_ms: float) -> int:
    """1: the window in which the fault began; 2: the next one; ..."""
    return int((first_seen_ms - window_of(fault_ms)) // (WINDOW_S * 1000)) + 1


def alerts_since(topic: str, since_ms: float) -> list:
    return [a for a in read_alerts(topic) if a.ts >= since_ms]


def test_stationary_then_broken_model_then_changed_world(registry, cli_env, procs, tmp_path):
    env = cli_env | {"SCORESTREAM_HOME": str(tmp_path), "SCORESTREAM_CANARY_WINDOW_S": str(WINDOW_S),
                     "SCORESTREAM_CANARY_GRACE_S": "0.5", "SCORESTREAM_CANARY_REFERENCE_WINDOWS": "4",
                     "SCORESTREAM_CANARY_MIN_COUNT": "100"}
    alerts_topic = registry.name("alerts")
    workers = {m: procs(m, "worker", "--model", m, "--role", role) for m, role in MODELS}
    for p in workers.values():
        wait_for_log(p, "assigned")
    monitor = procs("canary", "canary", env=env)
    wait_for_log(monitor, "canary monitor running")
    traffic = Traffic(registry.name("features"))
    traffic.thread.start()
    try:
        cpu0, sent0 = cpu_seconds(monitor.pid), traffic.sent
        time.sleep(WINDOW_S * 5 + STATIONARY_S)
        cpu, sent = cpu_seconds(monitor.pid) - cpu0, traffic.sent - sent0
        print(f"monitor CPU: {cpu:.2f} s for {sent} requests x {len(MODELS)} scores: "
              f"{1000 * cpu / sent:.3f} CPU-s per 1,000 requests")
        stationary = alerts_since(alerts_topic, 0)
        drift = [a for a in stationary if a.kind == "drift"]
        print(f"stationary: {STATIONARY_S / WINDOW_S:.0f} judged windows x 3 models x 3 signals, "
              f"{len(drift)} drift alerts")
        assert drift == [], drift
        assert "references.json" in " ".join(os.listdir(tmp_path / "canary"))

        # a redeploy of fraud_xgb@2 with its features in the wrong order
        workers["fraud_xgb@2"].terminate()
        workers["fraud_xgb@2"].wait(30)
        broken_at = time.time() * 1000
        broken = procs("broken", "worker", "--model", "fraud_xgb@2", "--registry-dir",
                       str(permuted_registry(tmp_path / "registry")))
        wait_for_log(broken, "assigned")
        time.sleep(WINDOW_S * 4)
        after = alerts_since(alerts_topic, broken_at)
        deltas = [a for a in after if a.alert == "canary_delta" and a.state == "firing"]
        assert [a.model for a in deltas] == ["fraud_xgb@2"], after
        print(f"permuted features: canary_delta for fraud_xgb@2 in window "
              f"{delay_in_windows(deltas[0].first_seen, broken_at)} after the redeploy "
              f"(value {deltas[0].value}, threshold {deltas[0].threshold})")

        # the world changes
        traffic.shift = True
        shifted_at = time.time() * 1000
        time.sleep(WINDOW_S * 4)
        world = [a for a in alerts_since(alerts_topic, shifted_at) if a.alert == "canary_drift"]
        assert world and world[0].model == "fraud_lr@1" and world[0].state == "firing", alerts_since(alerts_topic, 0)
        delay = delay_in_windows(world[0].first_seen, shifted_at)
        print(f"changed world: canary_drift in window {delay} after the change (value {world[0].value}, "
              f"threshold {world[0].threshold}); runbook {world[0].runbook}")
        assert delay <= 3

        # a restarted monitor picks up where it was: the world is still changed, nothing is repeated
        monitor.terminate()
        assert monitor.wait(30) == 0, open(monitor.log_path).read()[-3000:]
        restarted_at = time.time() * 1000
        monitor = procs("canary-restarted", "canary", env=env)
        wait_for_log(monitor, "canary monitor running")
        time.sleep(WINDOW_S * 4)
        repeated = [a for a in alerts_since(alerts_topic, restarted_at) if a.state == "firing"]
        assert repeated == [], repeated
    finally:
        traffic.stop.set()
        traffic.thread.join(10)
    assert monitor.poll() is None, open(monitor.log_path).read()[-3000:]
