"""Benchmark one model worker on this machine: sustained scores/s, and added latency at a fixed rate.

    python -m models.bench_worker                        # a temporary broker on a free port
    python -m models.bench_worker --bootstrap HOST:PORT  # an existing broker, topics under a fresh prefix

Throughput: COUNT feature records are written first, then one worker
(`scorestream worker`, a subprocess) scores them; the rate is taken from the
Kafka timestamps of the first and last score, so start-up is not counted.
Latency: a worker runs, features are sent at RATE per second for SECONDS, and
one reader sees both topics: "added" is, per request, when its score became
readable minus when its features became readable, the worker's share of the
path (consume wait, batching, scoring, produce, acks=all, commit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import TopicPartition

from extractors import get_extractor
from scorestream import kafka, topics
from scorestream.contract import Features, KafkaRecord
from scorestream.process import cpu_seconds
from scorestream.synthetic import TransactionGenerator


def feature_records(n: int, seed: int = 99) -> list[KafkaRecord]:
    """n distinct requests; 20k real vectors, cycled, keep generation out of the measurement's way."""
    samples = TransactionGenerator(seed).batch(min(n, 20_000))
    X = get_extractor("txn@1").extract_many([s.payload for s in samples]).tolist()
    now = int(time.time() * 1000)
    return [Features(f"{i:012d}", now, "txn@1", tuple(X[i % len(X)])).to_record() for i in range(n)]


@contextlib.contextmanager
def broker(bootstrap: str | None):
    if bootstrap:
        yield bootstrap
        return
    from scorestream.broker import Broker
    from scorestream.settings import StackSettings
    from scorestream.ports import free_port

    with tempfile.TemporaryDirectory(prefix="bench-broker-") as home:
        b = Broker(StackSettings(home=Path(home), kafka_port=free_port(2)))
        b.start()
        try:
            yield b.bootstrap
        finally:
            b.stop()


def fresh_topics(bootstrap: str) -> topics.TopicRegistry:
    reg = topics.TopicRegistry.load(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    topics.apply(kafka.admin(bootstrap), reg)
    return reg


def start_worker(bootstrap: str, reg: topics.TopicRegistry, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    env = os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": bootstrap,
                        "SCORESTREAM_TOPIC_PREFIX": reg.name("features").removesuffix("scoring.features")}
    cmd = [sys.executable, "-m", "scorestream.cli", "worker", "--model", args.model,
           "--batch-size", str(args.batch_size), "--batch-ms", str(args.batch_ms)]
    p = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "assigned " + reg.name("features") not in log.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return p


def send(bootstrap: str, topic: str, records: list[KafkaRecord], rate: float = 0.0,
         sent_ms: dict[bytes, float] | None = None) -> None:
    p = kafka.producer(bootstrap)
    start = time.perf_counter()
    for i, r in enumerate(records):
        if rate:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        if sent_ms is not None:
            sent_ms[r.key] = time.time() * 1000
        kafka.produce(p, topic, r)
        p.poll(0)
    p.flush(60)


def total_end(c, topic: str, partitions: int) -> int:
    return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))


def throughput(bootstrap: str, args: argparse.Namespace, log: Path) -> dict[str, float]:
    reg = fresh_topics(bootstrap)
    send(bootstrap, reg.name("features"), feature_records(args.count))
    worker = start_worker(bootstrap, reg, args, log)
    cpu_before = cpu_seconds(worker.pid)
    scores = reg["scores"]
    c = kafka.consumer(f"bench-{uuid.uuid4().hex[:8]}", bootstrap)
    try:
        while total_end(c, scores.name, scores.partitions) < args.count:
            if worker.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.2)
        cpu = cpu_seconds(worker.pid) - cpu_before
        worker.terminate()
        worker.wait(30)
        c.assign([TopicPartition(scores.name, p, 0) for p in range(scores.partitions)])
        stamps: list[int] = []
        while len(stamps) < args.count:
            stamps += [m.timestamp()[1] for m in c.consume(10_000, 1.0) if not m.error()]
    finally:
        c.close()
    seconds = (max(stamps) - min(stamps)) / 1000
    return {"scores": len(stamps), "seconds": seconds, "scores_per_s": (len(stamps) - 1) / seconds,
            "cpu_seconds": cpu, "scores_per_cpu_s": len(stamps) / cpu}


def latency(bootstrap: str, args: argparse.Namespace, log: Path) -> dict[str, np.ndarray]:
    reg = fresh_topics(bootstrap)
    worker = start_worker(bootstrap, reg, args, log)
    n = int(args.rate * args.seconds)
    records, sent = feature_records(n, seed=7), {}
    c = kafka.consumer(f"bench-{uuid.uuid4().hex[:8]}", bootstrap, **{"fetch.wait.max.ms": 1})
    c.assign([TopicPartition(reg.name(t), p, 0) for t in ("features", "scores") for p in range(4)])
    c.consume(1, 1.0)                                   # connected and fetching before the first request
    sender = threading.Thread(target=send, args=(bootstrap, reg.name("features"), records, args.rate, sent))
    sender.start()
    seen_f: dict[bytes, float] = {}
    seen_s: dict[bytes, float] = {}
    inside: list[float] = []                            # scored_at - received_at, from the annotations
    deadline = time.monotonic() + args.seconds + 30
    features_topic = reg.name("features")
    try:
        while len(seen_s) < n and time.monotonic() < deadline:
            m = c.poll(0.05)                            # returns at the first record: consume(n) would wait
            if m is None or m.error():
                continue
            if m.topic() == features_topic:
                seen_f[m.key()] = time.time() * 1000
            else:
                seen_s[m.key()] = time.time() * 1000
                doc = orjson.loads(m.value())
                inside.append(doc["scored_at"] - doc["received_at"])
    finally:
        sender.join()
        c.close()
        worker.terminate()
        worker.wait(30)
    warm = [r.key for r in records[int(args.rate):] if r.key in seen_s and r.key in seen_f]   # skip 1 s warm-up
    return {"kafka hop (features readable)": np.array([seen_f[k] - sent[k] for k in warm]),
            "score readable": np.array([seen_s[k] - sent[k] for k in warm]),
            "added by the worker": np.array([seen_s[k] - seen_f[k] for k in warm]),
            "in the worker (received→scored)": np.array(inside[int(args.rate):]),
            "_missing": np.array([n - len(seen_s)])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="an existing broker; default: start a temporary one")
    ap.add_argument("--model", default="fraud_xgb@3")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--batch-ms", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=200_000, help="records of the throughput run")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s of the latency run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    args = ap.parse_args(argv)
    with broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        print(f"model {args.model}, batch {args.batch_size} records / {args.batch_ms} ms, broker {bootstrap}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        t = throughput(bootstrap, args, Path(tmp) / "throughput.log")
        print(f"throughput: {t['scores']:,} scores in {t['seconds']:.2f} s = {t['scores_per_s']:,.0f} scores/s; "
              f"worker CPU {t['cpu_seconds']:.2f} s = {t['scores_per_cpu_s']:,.0f} scores per CPU-second "
              f"(load average {os.getloadavg()[0]:.1f})")
        lat = latency(bootstrap, args, Path(tmp) / "latency.log")
        print(f"(load average {os.getloadavg()[0]:.1f})")
        print(f"latency at {args.rate:,.0f} requests/s for {args.seconds:.0f} s "
              f"({len(lat['added by the worker']):,} requests after 1 s warm-up, "
              f"{int(lat['_missing'][0])} without a score), ms:")
        for name, v in lat.items():
            if not name.startswith("_") and len(v):
                p50, p90, p99 = np.percentile(v, [50, 90, 99])
                print(f"  {name:32s} p50 {p50:6.2f}  p90 {p90:6.2f}  p99 {p99:6.2f}  max {v.max():7.2f}")


if __name__ == "__main__":
    main()
