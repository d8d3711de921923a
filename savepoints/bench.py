"""Latency and exactly-once around a hot swap, beside a minute without one (docs/benchmarks.md).

    scorestream up
    python -m savepoints.bench --rate 300 --duration 60          # a minute without, then a minute with an upgrade

Each request's partition and offset come from its delivery report, so every answer can be checked against
the cut: before the swap token of its partition, the old deployment must answer; after it, the new one.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import click
import orjson

from savepoints.timeline import VERY_LATE_MS, CpuTrace, timeline
from scorestream import kafka
from scorestream.client import assigned_consumer
from scorestream.contract import Request
from scorestream.synthetic import TransactionGenerator, fresh_seed

@dataclass
class Sent:
    ts: int
    partition: int = -1
    offset: int = -1
    answers: list = field(default_factory=list)     # (received ms, answered_by deployment or None)


@dataclass
class SwapLoad:
    sent: dict[str, Sent]
    sla_ms: float

    def latencies(self, since_ms: float = 0, until_ms: float = float("inf")) -> list[float]:
        return [s.answers[0][0] - s.ts for s in self.sent.values() if s.answers and since_ms <= s.ts < until_ms]

    @property
    def lost(self) -> list[str]:
        return [rid for rid, s in self.sent.items() if not s.answers]

    @property
    def doubled(self) -> list[str]:
        return [rid for rid, s in self.sent.items() if len(s.answers) > 1]

    def summary(self, since_ms: float = 0, until_ms: float = float("inf")) -> str:
        lat = sorted(self.latencies(since_ms, until_ms))
        if len(lat) < 2:
            return "no answers"
        q = statistics.quantiles(lat, n=100, method="inclusive")
        within = sum(1 for x in lat if x <= self.sla_ms) / len(lat)
        very_late = sum(1 for x in lat if x > self.sla_ms + VERY_LATE_MS)
        return (f"{len(lat)} answers: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {lat[-1]:.0f} ms, "
                f"{within:.2%} within the SLA of {self.sla_ms:g} ms, {very_late} later than the SLA + {VERY_LATE_MS} ms")


def swap_load(requests_topic: str, results_topic: str, rate: float, seconds: float, sla_ms: float,
              bootstrap: str | None = None, action=None, action_at_s: float = 0.0, drain_s: float = 15.0,
              seed: int | None = None, after_s: float = 15.0) -> SwapLoad:
    """Publish at `rate` for `seconds`, and on for after_s once action() (run in a thread action_at_s in) has
    returned; collect every answer."""
    sent: dict[str, Sent] = {}
    stop = threading.Event()
    consumer = assigned_consumer(results_topic, bootstrap)

    def collect() -> None:
        while not stop.is_set():
            for msg in kafka.consume_ready(consumer, 1000, 0.05):
                if msg.error():
                    continue
                received = time.time() * 1000
                doc = orjson.loads(msg.value())
                s = sent.get(doc["request_id"])
                if s is not None:
                    s.answers.append((received, (doc.get("answered_by") or {}).get("deployment")))
        consumer.close()

    def delivered(err, msg):
        if not err:
            s = sent[msg.key().decode()]
            s.partition, s.offset = msg.partition(), msg.offset()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    actor = threading.Thread(target=action, daemon=True) if action else None
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    samples = iter(TransactionGenerator(fresh_seed() if seed is None else seed))
    start = time.perf_counter()
    i, action_done = 0, None
    while True:
        elapsed = time.perf_counter() - start
        if actor and action_done is None and actor.ident is not None and not actor.is_alive():
            action_done = elapsed
        if i >= rate * seconds and (actor is None or (action_done is not None and elapsed >= action_done + after_s)):
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        i += 1
        if actor and actor.ident is None and time.perf_counter() - start >= action_at_s:
            actor.start()
        sample = next(samples)
        request = Request(sample.request_id, int(time.time() * 1000), sample.payload)
        sent[sample.request_id] = Sent(request.ts)
        kafka.produce(producer, requests_topic, request.to_record(), on_delivery=delivered)
        producer.poll(0)
    producer.flush(30)
    if actor and actor.ident is not None:
        actor.join()
    deadline = time.monotonic() + drain_s
    while any(not s.answers for s in sent.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)              # a second answer would show up now
    stop.set()
    reader.join(5)
    return SwapLoad(sent, sla_ms)


@click.command()
@click.option("--job", type=click.Choice(["rendezvous", "extract"]), default="rendezvous")
@click.option("--rate", type=float, default=300.0)
@click.option("--duration", type=float, default=60.0, help="Seconds of each of the two runs.")
def main(job: str, rate: float, duration: float) -> None:
    """A minute of load without an upgrade, then a minute with `scorestream upgrade JOB` in its middle."""
    from rendezvous.policy import DEFAULT_PATH, Policy
    from scorestream.topics import TopicRegistry

    registry = TopicRegistry.load()
    sla = Policy.load(DEFAULT_PATH).sla_ms
    requests, results = registry.name("requests"), registry.name("results")
    from scorestream.settings import KafkaSettings
    from scorestream.warmup import warm_up        # the one warm-up (up's): the system, not its start
    warmed = warm_up(KafkaSettings().bootstrap(), sla, rate, 60.0, registry)
    if not warmed.steady:
        print(f"warning: {warmed.line()}")
    upgrade: dict = {}

    def act():
        upgrade["t0"] = time.time() * 1000
        upgrade["out"] = subprocess.run([sys.executable, "-m", "scorestream.cli", "upgrade", job],
                                        capture_output=True, text=True)
        upgrade["t1"] = time.time() * 1000

    with CpuTrace() as cpu:
        t_plain = time.time()
        plain = swap_load(requests, results, rate, duration, sla)
        t_swap = time.time()
        print(f"without an upgrade: {plain.summary()}; lost {len(plain.lost)}, doubled {len(plain.doubled)}")
        print(f"  cpu ms/s: {cpu.mean(t_plain, t_swap)}", flush=True)
        swapped = swap_load(requests, results, rate, duration, sla, action=act, action_at_s=duration / 3)
    out = upgrade["out"].stdout + upgrade["out"].stderr
    print(out)
    print(f"with an upgrade:    {swapped.summary()}; lost {len(swapped.lost)}, doubled {len(swapped.doubled)}")
    print(f"  during the upgrade command ({(upgrade['t1'] - upgrade['t0']) / 1000:.0f} s): "
          f"{swapped.summary(upgrade['t0'], upgrade['t1'])}")
    print(f"  cpu ms/s during it: {cpu.mean(upgrade['t0'] / 1000, upgrade['t1'] / 1000)}")
    print(f"  the new deployment took {cpu.total_s(f'flink.{job}.next'):.1f} CPU-seconds before the cut")
    print("seconds with late answers (by request time), without an upgrade:")
    print("\n".join(timeline(plain, cpu=cpu)) or "  none")
    print("with an upgrade, between its steps:")
    print("\n".join(timeline(swapped, {"": out}, cpu)) or "  none")


if __name__ == "__main__":
    main()
