"""`scorestream publish`: requests from a JSON-lines file, stdin, or the synthetic generator.

Counts come from delivery reports: a record is counted as delivered only when
the broker acknowledged it (idempotent producer, acks=all).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator

import orjson

from scorestream import kafka
from scorestream.contract import ContractError, Request
from scorestream.synthetic import TransactionGenerator


@dataclass
class PublishReport:
    delivered: int = 0
    failed: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)   # first few delivery errors

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def parse_line(line: str | bytes, now_ms: int) -> Request:
    """A request object, or a bare payload object; request_id and ts are filled in when absent."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ContractError("Request", None, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ContractError("Request", None, f"must be a JSON object, got {type(doc).__name__}")
    if "payload" not in doc:
        doc = {"payload": doc}
    doc.setdefault("ts", now_ms)
    if "request_id" not in doc:
        doc["request_id"] = uuid.uuid4().hex
    return Request.from_dict(doc)


def lines_to_requests(lines: IO, report: PublishReport) -> Iterator[Request]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_line(line, int(time.time() * 1000))
        except ContractError as exc:
            report.bad_lines.append((number, str(exc)))


def synthetic_requests(seed: int, count: int | None) -> Iterator[Request]:
    sent = 0
    for sample in TransactionGenerator(seed):
        if count is not None and sent >= count:
            return
        yield Request(sample.request_id, int(time.time() * 1000), sample.payload)
        sent += 1


def publish(requests: Iterable[Request], topic: str, rate: float = 0.0, bootstrap: str | None = None,
            report: PublishReport | None = None, on_progress: Callable[[int], None] | None = None) -> PublishReport:
    """Send requests at `rate` per second (0: as fast as possible); wait for every acknowledgement."""
    report = report or PublishReport()
    producer = kafka.producer(bootstrap)

    def delivered(err, _msg):
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            if len(report.errors) < 5:
                report.errors.append(str(err))

    start = time.perf_counter()
    for sent, request in enumerate(requests, start=1):
        kafka.produce(producer, topic, request.to_record(), on_delivery=delivered)
        if rate > 0:
            ahead = start + sent / rate - time.perf_counter()
            if ahead > 0.001:
                producer.poll(0)
                time.sleep(ahead)
        if sent % 1000 == 0:
            producer.poll(0)
            if on_progress:
                on_progress(sent)
    remaining = producer.flush(60)
    report.failed += remaining      # never acknowledged: not sent as far as anyone can tell
    report.seconds = time.perf_counter() - start
    return report
