"""Benchmark of the canary monitor: its CPU per 1,000 requests, and false alarms on stationary traffic
(docs/benchmarks.md).

    python -m canary.bench --rate 500 --duration 60 --window-s 5

Starts a throwaway broker on a free port (or uses --bootstrap), runs `scorestream canary` as a
subprocess under a fresh topic prefix, measures its idle CPU, then publishes, per request, one score
of each model of the default policy (a stationary synthetic distribution around the canary's) and one
answer, at a fixed rate. Prints the monitor's CPU (from /proc) per 1,000 requests, idle CPU removed,
and the alert records it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click
import numpy as np
import orjson

from scorestream import kafka, topics
from scorestream.process import cpu_seconds


def traffic(rng, n: int, models: list[str], canary: str) -> list[tuple[str, bytes, bytes]]:
    """(topic id, key, value) of n requests: a score per model, then an answer."""
    out = []
    now = time.time() * 1000
    base = rng.beta(1.2, 20, n)
    for i in range(n):
        rid = uuid.uuid4().hex[:16]
        scores = {}
        for m in models:
            s = float(base[i]) if m == canary else float(np.clip(base[i] + rng.normal(0, 0.02), 0, 1))
            scores[m] = s
            name, version = m.split("@")
            out.append(("scores", rid.encode(), orjson.dumps({
                "request_id": rid, "model": name, "version": int(version), "role": "candidate", "score": s,
                "worker": "bench", "received_at": now, "scored_at": now, "extractor": "txn@1"})))
        out.append(("results", rid.encode(), orjson.dumps({
            "request_id": rid, "score": scores[models[-1]], "model": models[-1].split("@")[0], "version": 1,
            "rule": "preferred", "latency_ms": float(rng.lognormal(2.5, 0.4)), "candidates": scores,
            "canary": {"score": scores[canary], "delta": 0.0}, "policy_version": 1})))
    return out


@click.command()
@click.option("--rate", type=float, default=500.0, help="Requests per second (each: one score per model, one answer).")
@click.option("--duration", type=float, default=60.0, help="Seconds of traffic.")
@click.option("--window-s", type=float, default=5.0, help="The monitor's window.")
@click.option("--bootstrap", default=None, help="Use this broker instead of starting a throwaway one.")
def main(rate: float, duration: float, window_s: float, bootstrap: str | None) -> None:
    broker = None
    home = Path(tempfile.mkdtemp(prefix="scorestream-bench-"))
    if not bootstrap:
        from scorestream.broker import Broker
        from scorestream.settings import StackSettings
        from scorestream.ports import free_port
        broker = Broker(StackSettings(home=home, kafka_port=free_port(2)))
        broker.start()
        bootstrap = broker.bootstrap
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    env = os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": bootstrap, "SCORESTREAM_TOPIC_PREFIX": prefix,
                        "SCORESTREAM_HOME": str(home), "SCORESTREAM_CANARY_WINDOW_S": str(window_s),
                        "SCORESTREAM_CANARY_GRACE_S": "1"}
    os.environ.update(env)
    registry = topics.TopicRegistry.load(prefix=prefix)
    topics.apply(kafka.admin(bootstrap), registry)
    log = open(home / "canary.log", "w")
    monitor = subprocess.Popen([sys.executable, "-m", "scorestream.cli", "canary"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        _run(monitor, home / "canary.log", registry, rate, duration, window_s)
    finally:
        monitor.terminate()
        monitor.wait(30)
        if broker:
            broker.stop()


def _run(monitor, log_path: Path, registry, rate: float, duration: float, window_s: float) -> None:
    from canary.alerts import read_alerts
    from rendezvous.policy import Policy

    policy = Policy.load()
    models = sorted(policy.models - {policy.canary}) + [policy.canary]
    deadline = time.monotonic() + 60
    while "canary monitor running" not in log_path.read_text():
        assert monitor.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    time.sleep(3)                     # partitions assigned, first fetches done
    idle0, t0 = cpu_seconds(monitor.pid), time.monotonic()
    time.sleep(10)
    idle_rate = (cpu_seconds(monitor.pid) - idle0) / (time.monotonic() - t0)

    rng = np.random.default_rng(1)
    producer = kafka.producer()
    names = {"scores": registry.name("scores"), "results": registry.name("results")}
    cpu0, start, sent = cpu_seconds(monitor.pid), time.monotonic(), 0
    step = max(1, int(rate / 20))
    while time.monotonic() - start < duration:
        for topic, key, value in traffic(rng, step, models, policy.canary):
            producer.produce(names[topic], value, key)
        producer.poll(0)
        sent += step
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(30)
    time.sleep(window_s + 3)          # the last window closes
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(monitor.pid) - cpu0
    busy = cpu - idle_rate * elapsed
    alerts = list(read_alerts(registry.name("alerts")))
    drift = [a for a in alerts if a.kind == "drift" and a.state == "firing"]
    click.echo(f"canary monitor: {sent} requests x {len(models)} scores + 1 answer at {sent / duration:,.0f}/s "
               f"for {duration:g} s ({duration / window_s:.0f} windows of {window_s:g} s)")
    click.echo(f"CPU {cpu:.2f} s in {elapsed:.0f} s, idle {idle_rate * 100:.1f} % of a core: "
               f"{1000 * busy / sent:.3f} CPU-s per 1,000 requests above idle "
               f"({1000 * cpu / sent:.3f} with idle), {100 * cpu / elapsed:.0f} % of a core")
    click.echo(f"alert records: {len(alerts)}; drift alerts firing on stationary traffic: {len(drift)} "
               + ", ".join(f"{a.alert} {a.model} {a.value:g}>{a.threshold:g}" for a in drift))


if __name__ == "__main__":
    main()
