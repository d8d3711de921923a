"""Ops on a real broker: `policy`, `promote --preview` over recent scores and results, `promote --undo`,
and the refusal of a model without a running worker (a worker is a member of its consumer group)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid


from scorestream import kafka
from scorestream.contract import Result, Score

POLICY = """\
version: {version}
sla_ms: 100
canary: fraud_lr@1
arms:
  - model: {arm}
fallback:
  - after_ms: 30
    use: [fraud_xgb@2]
default: {{score: 0.0}}
"""


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


class GroupMember:
    """A consumer in a worker's group, as a running worker would be."""

    def __init__(self, bootstrap: str, ref: str, topic: str):
        self.consumer = kafka.consumer(f"scorestream.score.{ref}", bootstrap)
        self.consumer.subscribe([topic])
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.consumer.poll(0.2)

    def close(self):
        self.running = False
        self.thread.join()
        self.consumer.close()


def traffic(bootstrap: str, registry, n: int = 200) -> None:
    """n answered requests: fraud_xgb@3 preferred at +12 ms, fraud_xgb@2 at +20 ms, the canary at +5 ms."""
    producer = kafka.producer(bootstrap)
    start = int(time.time() * 1000) - 30_000
    for i in range(n):
        rid, ts = f"p-{uuid.uuid4().hex[:8]}", start + i * 10
        for ref, after, value in (("fraud_lr@1", 5, 0.2), ("fraud_xgb@3", 12, 0.5), ("fraud_xgb@2", 20, 0.4)):
            name, version = ref.split("@")
            score = Score(rid, name, int(version), "canary" if name == "fraud_lr" else "candidate", value, "t",
                          ts, ts, "txn@1")
            producer.produce(registry.name("scores"), score.to_json(), rid.encode(), timestamp=ts + after)
        result = Result(rid, 0.5, "fraud_xgb", 3, "preferred", 13.0, {"fraud_xgb@3": 0.5},
                        {"score": 0.2, "delta": 0.3}, 1)
        producer.produce(registry.name("results"), result.to_json(), timestamp=ts + 13)
    producer.flush(30)


def test_policy_preview_promote_undo(cli_env, broker, registry, tmp_path):
    def policy_file(version, arm):
        path = tmp_path / f"p{version}.yaml"
        path.write_text(POLICY.format(version=version, arm=arm))
        return str(path)

    shown = cli(cli_env, "policy")
    assert shown.returncode == 0 and "no policy promoted" in shown.stdout
    traffic(broker.bootstrap, registry)
    members = [GroupMember(broker.bootstrap, ref, registry.name("features")) for ref in ("fraud_xgb@2", "fraud_lr@1")]
    try:
        refused = cli(cli_env, "promote", policy_file(2, "fraud_xgb@3"), "--preview")
        assert refused.returncode == 1 and "no running worker for fraud_xgb@3" in refused.stderr
        members.append(GroupMember(broker.bootstrap, "fraud_xgb@3", registry.name("features")))
        deadline = time.monotonic() + 30
        while (done := cli(cli_env, "promote", policy_file(2, "fraud_xgb@3"))).returncode != 0:
            assert time.monotonic() < deadline, done.stderr      # the group takes a moment to be joined
            time.sleep(1)
        preview = cli(cli_env, "promote", policy_file(3, "fraud_xgb@2"), "--preview", "--minutes", "2")
        assert preview.returncode == 0, preview.stderr
        text = preview.stdout
        assert "-version: 2" in text and "+version: 3" in text and "+- model: fraud_xgb@2" in text
        rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
                for line in text.splitlines() if line.count("│") >= 4}
        assert rows["model fraud_xgb@3"] == ["100.0%", "0.0%"]
        assert rows["model fraud_xgb@2"] == ["0.0%", "100.0%"]
        assert rows["rule preferred"][1] == "100.0%"
        assert rows["latency p50 / p99 ms"][1].startswith("20.0 / 20.0")
        assert cli(cli_env, "policy").stdout.startswith("# version 2")       # the preview changed nothing
        assert cli(cli_env, "promote", policy_file(3, "fraud_xgb@2")).returncode == 0
        assert "puts back version 2" in cli(cli_env, "policy").stdout
        undone = cli(cli_env, "promote", "--undo")
        assert undone.returncode == 0, undone.stderr
        shown = cli(cli_env, "policy").stdout
        assert shown.startswith("# version 2") and "fraud_xgb@3" in shown
    finally:
        for m in members:
            m.close()


