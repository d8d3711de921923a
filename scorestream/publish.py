"""`scorestream publish` and `scorestream outcomes`: requests (and their labels) to Kafka.

Requests come from a JSON-lines file, stdin, or the synthetic generator, which
can also send each request's ground-truth label a fixed delay later, as a
bank's chargeback feed would. Counts come from delivery reports: a record is
counted as delivered only when the broker acknowledged it (idempotent
producer, acks=all).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator

import orjson

from scorestream import kafka, security
from scorestream.contract import ContractError, Outcome, Request
from scorestream.synthetic import TransactionGenerator


@dataclass
class PublishReport:
    delivered: int = 0
    failed: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)   # first few delivery errors
    outcomes: int = 0                                  # labels acknowledged (publish --outcomes-after-ms)

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


def parse_outcome_line(line: str | bytes, now_ms: int) -> Outcome:
    """An outcome {"request_id", "label": 0|1, "ts"}; ts is filled in when absent."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ContractError("Outcome", None, f"not JSON: {exc}") from None
    if isinstance(doc, dict):
        doc.setdefault("ts", now_ms)
    return Outcome.from_dict(doc)


def lines_to_outcomes(lines: IO, report: PublishReport) -> Iterator[Outcome]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_outcome_line(line, int(time.time() * 1000))
        except ContractError as exc:
            report.bad_lines.append((number, str(exc)))


def synthetic_requests(seed: int, count: int | None, regime: str = "old",
                       labels: dict[str, int] | None = None) -> Iterator[Request]:
    """Requests of the generator; each one's ground-truth label goes into `labels` when given."""
    sent = 0
    for sample in TransactionGenerator(seed, regime):
        if count is not None and sent >= count:
            return
        if labels is not None:
            labels[sample.request_id] = sample.label
        yield Request(sample.request_id, int(time.time() * 1000), sample.payload)
        sent += 1


@dataclass
class DelayedOutcomes:
    """Each request's label, sent `after_ms` after the request (labels: request_id -> 0|1, filled as
    requests are generated)."""

    topic: str
    after_ms: float
    labels: dict[str, int] = field(default_factory=dict)
    due: deque = field(default_factory=deque)          # (perf_counter time, request_id), in order

    def schedule(self, request_id: str) -> None:
        self.due.append((time.perf_counter() + self.after_ms / 1000.0, request_id))

    def send_due(self, producer, on_delivery, until: float | None = None) -> None:
        """Send every label due by now (or, with `until`, wait for and send every label due before it)."""
        while self.due:
            when, request_id = self.due[0]
            wait = when - time.perf_counter()
            if wait > 0:
                if until is None or when > until:
                    return
                producer.poll(0)
                time.sleep(wait)
            self.due.popleft()
            outcome = Outcome(request_id, self.labels.pop(request_id), int(time.time() * 1000))
            kafka.produce(producer, self.topic, outcome.to_record(), on_delivery=on_delivery)


def publish(requests: Iterable[Request | Outcome], topic: str, rate: float = 0.0, bootstrap: str | None = None,
            report: PublishReport | None = None, on_progress: Callable[[int], None] | None = None,
            outcomes: DelayedOutcomes | None = None) -> PublishReport:
    """Send records at `rate` per second (0: as fast as possible); wait for every acknowledgement.

    With `outcomes`, each request's label follows it `outcomes.after_ms` later (the last ones are waited for).
    """
    report = report or PublishReport()
    producer = kafka.producer(bootstrap)

    def delivered(err, msg):
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            if len(report.errors) < 5:
                report.errors.append(security.refusal(err, f"topic {msg.topic()}") or str(err))

    def label_delivered(err, msg):
        if err is None:
            report.outcomes += 1
        else:
            delivered(err, msg)

    start = time.perf_counter()
    for sent, request in enumerate(requests, start=1):
        kafka.produce(producer, topic, request.to_record(), on_delivery=delivered)
        if outcomes is not None:
            outcomes.schedule(request.request_id)
            outcomes.send_due(producer, label_delivered)
        if rate > 0:
            ahead = start + sent / rate - time.perf_counter()
            if ahead > 0.001:
                producer.poll(0)
                time.sleep(ahead)
        if sent % 1000 == 0:
            producer.poll(0)
            if on_progress:
                on_progress(sent)
    if outcomes is not None:
        outcomes.send_due(producer, label_delivered, until=float("inf"))
    remaining = producer.flush(60)
    report.failed += remaining      # never acknowledged: not sent as far as anyone can tell
    report.seconds = time.perf_counter() - start
    return report
