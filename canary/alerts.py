"""When an alert fires and clears, and its records on scoring.alerts.

One record when a condition has held for `fire_after` windows in a row, nothing while it
stays firing, one `resolved` record after `clear_after` clean windows. The topic itself is
the memory: a restarted monitor reads the latest record per key and knows what already
fires, so it repeats nothing.

>>> book = AlertBook(fire_after=1, clear_after=2)
>>> judge = lambda breached: book.observe(("sla", "*"), breached, 7, lambda state, first: state)
>>> [judge(b) for b in (False, True, True, False, True, False, False, False)]
[None, 'firing', None, None, None, None, 'resolved', None]
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from scorestream import kafka
from scorestream.contract import Alert, ContractError

RUNBOOK = "docs/runbook.md"
R = TypeVar("R")


@dataclass
class AlertState:
    firing: bool = False
    first_seen: int = 0          # epoch ms of the window where it fired
    breaches: int = 0            # windows in a row over the threshold
    clean: int = 0               # windows in a row under it


class AlertBook:
    def __init__(self, fire_after: int = 1, clear_after: int = 2):
        self.fire_after, self.clear_after = fire_after, clear_after
        self.states: dict[tuple[str, str], AlertState] = {}

    def restore(self, records: Iterable[Alert]) -> None:
        """The latest record per key, read back from the topic, says what fires already."""
        for a in records:
            self.states[(a.alert, a.model)] = AlertState(a.state == "firing", a.first_seen)

    def firing(self) -> list[tuple[str, str]]:
        return [k for k, s in self.states.items() if s.firing]

    def observe(self, key: tuple[str, str], breached: bool, window_ms: int,
                record: Callable[[str, int], R]) -> R | None:
        """Judge one window; record(state, first_seen) builds what to publish when the state changes."""
        s = self.states.setdefault(key, AlertState())
        s.breaches, s.clean = (s.breaches + 1, 0) if breached else (0, s.clean + 1)
        if not s.firing and s.breaches >= self.fire_after:
            s.firing, s.first_seen = True, window_ms
            return record("firing", s.first_seen)
        if s.firing and s.clean >= self.clear_after:
            s.firing = False
            return record("resolved", s.first_seen)
        return None


def runbook_link(alert: str) -> str:
    return f"{RUNBOOK}#{alert.replace('_', '-')}"


def read_alerts(topic: str, bootstrap: str | None = None, follow: bool = False,
                idle_s: float = 1.0) -> Iterator[Alert]:
    """Every record of the alerts topic from the beginning; with follow, then every new one."""
    consumer = kafka.consumer(f"scorestream.alerts.read.{uuid.uuid4().hex[:8]}", bootstrap)
    try:
        partitions = kafka.partitions(consumer, topic)
        ends = {p: kafka.watermarks(consumer, topic, p)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        done = {p for p, end in ends.items() if end == 0}
        last = time.monotonic()
        while follow or (len(done) < len(partitions) and time.monotonic() - last < 10 * idle_s):
            for msg in kafka.consume_ready(consumer, 1000, 0.2):
                if msg.error():
                    continue
                last = time.monotonic()
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    done.add(msg.partition())
                try:
                    yield Alert.from_json(msg.value())
                except ContractError:
                    continue
    finally:
        consumer.close()


def latest(records: Iterable[Alert]) -> dict[tuple[str, str], Alert]:
    """The latest record per (alert, model)."""
    out: dict[tuple[str, str], Alert] = {}
    for a in records:
        out[(a.alert, a.model)] = a
    return out


def firing_now(topic: str, bootstrap: str | None = None) -> list[Alert]:
    return [a for a in latest(read_alerts(topic, bootstrap)).values() if a.state == "firing"]
