"""`scorestream deploy` on a real engine: a new model version's containers score into scoring.scores and no
answer uses it until `promote`, then answers do; a model not in the registry, or whose file fails its
checksum, is refused before any container starts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import orjson
import pytest

from scorestream import kafka
from scorestream.client import assigned_consumer
from scorestream.containers import engine, listed
from tests.capacity import BUSY, busy_during

WITHOUT_XGB4 = """\
version: 101
sla_ms: 100
canary: fraud_lr@1
arms:
  - model: fraud_xgb@3
fallback:
  - after_ms: 60
    use: [fraud_xgb@2, fraud_lr@1]
default: {score: 0.0}
"""
XGB4_PREFERRED = WITHOUT_XGB4.replace("version: 101", "version: 102").replace("fraud_xgb@3", "fraud_xgb@4")


def cli(system, *args, timeout=120):
    done = subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=system.env | {"COLUMNS": "250"},
                          capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_deploy_scores_flow_and_are_ignored_until_promote(compose_system, tmp_path):
    system = compose_system
    system.compose("stop", "-t", "10", "worker-xgb4")     # fraud_xgb@4 is the new version here
    (tmp_path / "p1.yaml").write_text(WITHOUT_XGB4)
    (tmp_path / "p2.yaml").write_text(XGB4_PREFERRED)
    assert cli(system, "promote", str(tmp_path / "p1.yaml"))[0] == 0
    try:
        code, output = cli(system, "deploy", "fraud_xgb@4", "--replicas", "2")
        assert code == 0 and "as containers" in output, output
        assert len(listed(engine(), "fraud_xgb@4")) == 2
        code, output = cli(system, "status")
        assert "scorestream-fraud-xgb-v4-1" in output and "fraud_xgb@4" in output, output

        deadline = time.monotonic() + 120        # the new workers start and join their group
        while not (scores := _xgb4_scores(system)) and time.monotonic() < deadline:
            time.sleep(2)
        assert scores, "fraud_xgb@4's scores reach scoring.scores"
        # 25/s: at 100/s a starved host answered every request by the default, before and after (2026-11-27)
        before = system.load(250, rate=25)
        assert (before.answered, before.duplicates) == (250, 0)
        assert "fraud_xgb@4" not in before.by_model, f"no answer uses a model no policy names: {before.by_model}"

        assert cli(system, "promote", str(tmp_path / "p2.yaml"))[0] == 0
        time.sleep(2)
        after, busy = busy_during(lambda: system.load(250, rate=25))
        print(f"before promote {dict(before.by_model)}; after {dict(after.by_model)}; host CPUs {busy:.0%} busy")
        assert (after.answered, after.duplicates) == (250, 0)
        # the promoted version answers in place of the one it replaced; how many answers it gives before the fallbacks
        # and the default step in depends on the host's spare CPU (a busy host left it 149 of 500, the default 226;
        # a starved one none): judged unless the host's CPUs were taken, as the load tests' pre-flight judges
        assert "fraud_xgb@3" not in after.by_model, f"no answer uses the model promote replaced: {after.by_model}"
        if busy < BUSY:
            assert after.by_model["fraud_xgb@4"] >= 25, f"after promote fraud_xgb@4 answers: {after.by_model}"
    finally:
        code, output = cli(system, "undeploy", "fraud_xgb@4")
        assert code == 0 and "scorestream-fraud-xgb-v4-1" in output, output
        assert listed(engine(), "fraud_xgb@4") == []
        cli(system, "promote", "rendezvous/policy.yaml")
        system.compose("start", "worker-xgb4")


def _xgb4_scores(system) -> int:
    """How many fraud_xgb@4 scores reach scoring.scores while 50 requests are answered."""
    consumer = assigned_consumer("scoring.scores", system.bootstrap)
    system.load(50, rate=50, drain_s=3)
    count, idle_until = 0, time.monotonic() + 3
    while time.monotonic() < idle_until:
        for msg in kafka.consume_ready(consumer, 10000, 0.5):
            score = orjson.loads(msg.value()) if not msg.error() else {}
            count += (score.get("model"), score.get("version")) == ("fraud_xgb", 4)
    consumer.close()
    return count


@pytest.mark.parametrize("case", ["unknown", "checksum"])
def test_deploy_refuses_before_any_container_starts(compose_system, tmp_path, case):
    registry = tmp_path / "registry"
    shutil.copytree("models/registry", registry)
    if case == "checksum":
        (registry / "fraud_xgb" / "3" / "model.onnx").write_bytes(b"not the model")
    ref = "fraud_xgb@9" if case == "unknown" else "fraud_xgb@3"
    before = {c.name for c in listed(engine())}
    code, output = cli(compose_system, "deploy", ref, "--registry-dir", str(registry))
    assert code == 1
    assert ("no model 'fraud_xgb@9'" in output) if case == "unknown" else ("sha256" in output), output
    assert {c.name for c in listed(engine())} == before, "nothing started"
