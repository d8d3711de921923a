"""Tumbling windows on event time, closed by the monitor itself.

A window [start, start + length) closes when the event-time watermark (the newest
timestamp seen) passes its end plus `grace`, or, when nothing arrives, when the wall
clock does: a quiet topic still closes its windows, and a backlog read after a restart
is cut by the records' own times, not by the wall clock. A record for a window already
closed is counted as late and left out.

>>> w = Windows(length_ms=1000, grace_ms=200, clock=lambda: 1500)
>>> w.at(1500).answers += 1
>>> [x.start_ms for x in w.due(now_ms=1700)], [x.start_ms for x in w.due(now_ms=2200)]
([], [1000])
>>> w.at(1999) is None, w.late
(True, 1)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from datasketches import kll_floats_sketch

from canary.stats import sketch


@dataclass
class Window:
    start_ms: int
    length_ms: int
    scores: dict[str, kll_floats_sketch] = field(default_factory=dict)     # model -> its scores
    deltas: dict[str, kll_floats_sketch] = field(default_factory=dict)     # model -> its score minus the canary's
    latency: kll_floats_sketch = field(default_factory=sketch)              # answers' latency_ms
    by_rule: Counter = field(default_factory=Counter)
    answers: int = 0             # answers that count for the SLOs (rejections do not)
    within_sla: int = 0
    missing: Counter = field(default_factory=Counter)                       # model -> answers without its score

    def add(self, table: dict[str, kll_floats_sketch], model: str, value: float) -> None:
        s = table.get(model)
        if s is None:
            s = table[model] = sketch()
        s.update(value)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.length_ms

    @property
    def label(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.start_ms / 1000)) + f"+{self.length_ms / 1000:g}s"


class Windows:
    def __init__(self, length_ms: int, grace_ms: int, clock: Callable[[], float] = lambda: time.time() * 1000):
        self.length_ms, self.grace_ms, self.clock = length_ms, grace_ms, clock
        self.open: dict[int, Window] = {}
        self.closed_until = 0          # windows starting before this are closed
        self.watermark = 0             # newest event time seen
        self.last_event = 0.0          # wall clock of the newest event (ms)
        self.late = 0

    def at(self, ts_ms: float) -> Window | None:
        """The open window of an event time, or None (counted late) when that window has closed."""
        ts = int(ts_ms)
        start = ts - ts % self.length_ms
        if start < self.closed_until:
            self.late += 1
            return None
        self.watermark = max(self.watermark, ts)
        self.last_event = self.clock()
        w = self.open.get(start)
        if w is None:
            w = self.open[start] = Window(start, self.length_ms)
        return w

    def due(self, now_ms: float) -> list[Window]:
        """Windows to close now, oldest first."""
        quiet = now_ms - self.last_event >= self.grace_ms
        out = []
        for start in sorted(self.open):
            end = start + self.length_ms + self.grace_ms
            if self.watermark >= end or (quiet and now_ms >= end):
                out.append(self.open.pop(start))
                self.closed_until = max(self.closed_until, start + self.length_ms)
            else:
                break
        return out
