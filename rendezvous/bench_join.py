"""The memory of the outcome join: bytes the rendezvous holds per request kept for its outcome.

    scorestream up --broker-only
    python -m rendezvous.bench_join --rate 500 --horizon-s 60
    scorestream down

Runs the rendezvous job alone (its own topic prefix) with a policy whose
outcome_horizon_s is --horizon-s, feeds it requests and four scores each (no
workers: the scores are written by this script) for the horizon plus 15 s, so
that rate x horizon requests are held, then reads the live-request gauge and
the JVM's heap after a full collection (jcmd GC.run, GC.heap_info) against
the same before the traffic. The state held depends on the number of requests
held, not on the rate: 500/s for 60 s holds as many as 1,000/s for 30 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click

from scorestream import kafka, topics
from scorestream.contract import Score
from scorestream.metrics import read_metric
from scorestream.flink import gateway_jvm
from scorestream.publish import synthetic_requests
from scorestream.settings import StackSettings

MODELS = ("fraud_xgb@2", "fraud_xgb@3", "fraud_xgb@4", "fraud_lr@1")
POLICY = """\
version: 1
sla_ms: 100
canary: fraud_lr@1
arms: [{{model: fraud_xgb@3}}, {{model: fraud_xgb@2}}]
default: {{score: 0.0}}
outcome_horizon_s: {horizon}
"""


def _java_child(pid: int) -> int:
    """The JVM the job's Python process started (PyFlink's gateway)."""
    for _ in range(120):
        if found := gateway_jvm(pid):
            return found[0]
        time.sleep(0.5)
    raise click.ClickException(f"no JVM under pid {pid}")


def _heap_used_kb(jvm: int) -> int:
    subprocess.run(["jcmd", str(jvm), "GC.run"], capture_output=True, timeout=60, check=True)
    time.sleep(1)
    info = subprocess.run(["jcmd", str(jvm), "GC.heap_info"], capture_output=True, text=True, timeout=60).stdout
    return int(re.search(r"used (\d+)K", info).group(1))


@click.command()
@click.option("--rate", type=float, default=500.0, show_default=True, help="Requests per second.")
@click.option("--horizon-s", type=float, default=60.0, show_default=True, help="The policy's outcome_horizon_s.")
def main(rate: float, horizon_s: float) -> None:
    prefix = f"benchjoin{uuid.uuid4().hex[:6]}."
    registry = topics.TopicRegistry.load(prefix=prefix)
    admin = kafka.admin()
    topics.apply(admin, registry)
    policy = Path(tempfile.mkdtemp()) / "policy.yaml"
    policy.write_text(POLICY.format(horizon=horizon_s))
    port = StackSettings().metrics_port_base
    url = f"http://127.0.0.1:{port}/metrics"
    job = subprocess.Popen([sys.executable, "-m", "scorestream.cli", "job", "rendezvous", "--policy", str(policy),
                            "--metrics-port", str(port)], env=os.environ | {"SCORESTREAM_TOPIC_PREFIX": prefix},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if "submitted" not in job.stdout.readline():
            raise click.ClickException("the rendezvous job did not start")
        jvm = _java_child(job.pid)
        producer = kafka.producer()
        send(producer, registry, 50, 50.0)                        # warm up: the job answers
        time.sleep(horizon_s + 15)                                # ... and frees the warm-up's state
        before_live, before_kb = read_metric(url, "scorestream_rendezvous_live_requests"), _heap_used_kb(jvm)
        seconds = horizon_s + 15
        send(producer, registry, int(rate * seconds), rate)
        time.sleep(2)
        live, kb = read_metric(url, "scorestream_rendezvous_live_requests"), _heap_used_kb(jvm)
        held = live - before_live
        per = (kb - before_kb) * 1024 / max(1.0, held)
        click.echo(f"rate {rate:g}/s, horizon {horizon_s:g} s: {held:,.0f} requests held (rate x horizon = "
                   f"{rate * horizon_s:,.0f}); JVM heap after full GC {before_kb / 1024:,.1f} -> {kb / 1024:,.1f} MiB: "
                   f"{per:,.0f} bytes per request held; at 1,000/s and 30 s: {per * 30_000 / 2**20:,.1f} MiB")
    finally:
        job.terminate()
        job.wait(60)
        admin.delete_topics([t.name for t in registry])


def send(producer, registry, count: int, rate: float) -> None:
    """Requests at `rate`, each followed by a score of every model (as workers would send them)."""
    start = time.perf_counter()
    for i, request in enumerate(synthetic_requests(seed=3, count=count), start=1):
        kafka.produce(producer, registry.name("requests"), request.to_record())
        for ref in MODELS:
            name, version = ref.split("@")
            now = time.time() * 1000
            score = Score(request.request_id, name, int(version), "canary" if name == "fraud_lr" else "candidate",
                          0.05, "bench", now, now, "txn@1")
            kafka.produce(producer, registry.name("scores"), score.to_record())
        ahead = start + i / rate - time.perf_counter()
        if ahead > 0.001:
            producer.poll(0)
            time.sleep(ahead)
    producer.flush(30)


if __name__ == "__main__":
    main()
