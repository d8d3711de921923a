"""Offered load and what came back: publish synthetic requests at a fixed rate, time their answers.

Latency is measured as a producer sees it: from the request's `ts` (set when
it is sent) to the moment its answer is read from the answer topic.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from scorestream import kafka
from scorestream.client import assigned_consumer
from scorestream.contract import Request
from scorestream.synthetic import TransactionGenerator, fresh_seed


@dataclass
class LoadReport:
    offered_rate: float
    sla_ms: float
    published: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    duplicates: int = 0
    by_model: Counter = field(default_factory=Counter)
    by_rule: Counter = field(default_factory=Counter)
    canary_deltas: list[float] = field(default_factory=list)
    rejections: Counter = field(default_factory=Counter)     # "stage field" of the requests answered as rejected
    rejected_latencies_ms: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def within_sla(self) -> float:
        return sum(1 for x in self.latencies_ms if x <= self.sla_ms) / self.published if self.published else 0.0

    @property
    def achieved_rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def percentile(self, q: float, rejected: bool = False) -> float:
        """The q-th percentile of the answers' latency, or of the rejected ones' only."""
        values = self.rejected_latencies_ms if rejected else self.latencies_ms
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def run_load(requests_topic: str, answers_topic: str, rate: float, duration_s: float, sla_ms: float,
             bootstrap: str | None = None, seed: int | None = None, drain_s: float = 5.0, on_progress=None,
             lead_in_s: float = 1.0, bad_share: float = 0.0, on_counted=None, on_answered=None) -> LoadReport:
    """Publish rate*duration_s requests at `rate`, collect their answers until all came or drain_s passed.

    A share `bad_share` of the requests carries a payload the extractor refuses (an amount that is not a
    number): they should come back rejected, and their latency is reported apart.

    The first lead_in_s of traffic, at the same rate, is not counted: a new producer has to connect and
    get its producer id first, and the records queued meanwhile would count as the system's latency.
    on_counted() is called when the counted traffic begins, on_answered() when its answers came (or drain_s
    passed): the measured interval of the cost model.
    """
    report = LoadReport(rate, sla_ms)
    sent: dict[bytes, int] = {}
    answered: set[bytes] = set()
    stop = threading.Event()
    consumer = assigned_consumer(answers_topic, bootstrap)

    def collect() -> None:
        try:
            while not stop.is_set():
                for msg in kafka.consume_ready(consumer, 1000, 0.05):
                    if msg.error():
                        continue
                    received = time.time() * 1000
                    doc = orjson.loads(msg.value())
                    rid = doc["request_id"].encode()
                    ts = sent.get(rid)
                    if ts is None:
                        continue
                    if rid in answered:
                        report.duplicates += 1
                        continue
                    answered.add(rid)
                    report.latencies_ms.append(received - ts)
                    if "rule" in doc:      # a rendezvous result (the bare-hops floor forwards requests)
                        report.by_rule[doc["rule"]] += 1
                        report.by_model[f"{doc['model']}@{doc['version']}" if doc["model"] else doc["rule"]] += 1
                        if doc.get("error"):
                            report.rejections[f"{doc['error']['stage']} {doc['error']['field']}"] += 1
                            report.rejected_latencies_ms.append(received - ts)
                        if doc.get("canary"):
                            report.canary_deltas.append(doc["canary"]["delta"])
        finally:
            consumer.close()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    total, lead_in = int(rate * duration_s), int(rate * lead_in_s)
    samples = iter(TransactionGenerator(fresh_seed() if seed is None else seed))
    bad_every = round(1 / bad_share) if bad_share else 0
    start = counted_from = time.perf_counter()
    for i in range(-lead_in, total):
        delay = start + (i + lead_in) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if i == 0:
            if on_counted:
                on_counted()
            counted_from = time.perf_counter()
        sample = next(samples)
        payload = dict(sample.payload, amount="not a number") if bad_every and i % bad_every == 0 else sample.payload
        request = Request(sample.request_id, int(time.time() * 1000), payload)
        if i >= 0:
            sent[request.key] = request.ts
        kafka.produce(producer, requests_topic, request.to_record())
        producer.poll(0)
        if on_progress and i >= 0 and i % 100 == 0:
            on_progress(i)
    producer.flush(30)
    report.seconds = time.perf_counter() - counted_from
    report.published = total
    deadline = time.monotonic() + drain_s
    while len(answered) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    if on_answered:
        on_answered()
    time.sleep(0.5)                      # a second answer would show up now
    stop.set()
    reader.join(5)
    return report

