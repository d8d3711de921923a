"""`scorestream canary reference --from --to` on the real broker: archived requests (the decoy's archive)
replayed through every model of the policy, cut into the monitor's windows, pinned as its references."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from confluent_kafka import Producer

from canary.stats import load_references
from decoy.archiver import Archiver
from decoy.settings import DecoySettings
from rendezvous.policy import Policy
from scorestream.contract import Request
from scorestream.publish import synthetic_requests

MINUTE = 60_000


def test_references_from_an_archived_range(broker, registry, cli_env, tmp_path):
    t0 = int(time.time() * 1000) - 20 * MINUTE
    t0 -= t0 % MINUTE
    requests = list(synthetic_requests(seed=3, count=3000))
    stamps = np.linspace(t0, t0 + 10 * MINUTE - 1, len(requests)).astype(np.int64).tolist()
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i, (request, ts) in enumerate(zip(requests, stamps)):
        record = Request(request.request_id, ts, request.payload).to_record()
        p.produce(registry.name("requests"), record.value, record.key, timestamp=ts, partition=i % 4)
    assert p.flush(30) == 0
    assert Archiver(DecoySettings(idle_exit_s=1.0, batch_ms=20), registry, broker.bootstrap).run().archived == 3000

    env = cli_env | {"SCORESTREAM_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "scorestream.cli", "canary", "reference", "--from", str(t0),
                          "--to", str(t0 + 10 * MINUTE)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    files = list((tmp_path / "canary").glob("*references.json"))
    assert len(files) == 1 and files[0].name.startswith(registry.name("alerts").split("scoring.")[0])
    references = load_references(files[0])
    policy = Policy.load()
    others = policy.models - {policy.canary}
    assert set(references) == {f"scores:{m}" for m in policy.models} | {f"delta:{m}" for m in others}
    for name, ref in references.items():
        assert ref.sketch.n == 3000 and len(ref.spread) == 10, name      # ten one-minute windows of 300
        assert 0.05 <= ref.threshold < 0.5, (name, ref.threshold)
    assert "restart the monitor" in run.stdout
    json.loads(files[0].read_text())

    empty = subprocess.run([sys.executable, "-m", "scorestream.cli", "canary", "reference", "--from", str(t0 - 5 * MINUTE),
                            "--to", str(t0 - MINUTE)], env=env, capture_output=True, text=True, timeout=120)
    assert empty.returncode != 0 and "no reference" in empty.stderr
