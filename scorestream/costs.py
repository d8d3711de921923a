"""The cost model of `scorestream bench`: what every part of the running system spends, from its own counters.

Per part (the broker, each Flink job, the decoy, each worker, the canary monitor): CPU time (user + system of
its process tree, /proc/<pid>/stat) per 1,000 requests over the measured interval, the CPU it burns per second
with no load, and its resident memory (/proc/<pid>/statm) at the end of the interval.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

from rich.table import Table

from scorestream import stack
from scorestream.process import children, cpu_seconds, rss_bytes
from scorestream.settings import StackSettings

LOAD_GENERATOR = "load generator (this process)"


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far and resident MiB of every running part at one moment."""

    at: float
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]
    pids: dict[str, int] = field(default_factory=dict)   # a part's name may pass to another process (an upgrade)


def sample(settings: StackSettings | None = None) -> Sample:
    cpu, rss, children_of, pids = {}, {}, children(), stack.pids(settings)
    for name, pid in pids.items():
        cpu[name], rss[name] = cpu_seconds(pid, children_of), rss_bytes(pid, children_of) / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF)      # the bench's own producer and reader, shown apart
    cpu[LOAD_GENERATOR], rss[LOAD_GENERATOR] = own.ru_utime + own.ru_stime, own.ru_maxrss / 1024
    return Sample(time.monotonic(), cpu, rss, pids | {LOAD_GENERATOR: os.getpid()})


@dataclass(frozen=True)
class PartCost:
    part: str
    idle_ms_per_s: float          # CPU ms per second of wall time with no load
    ms_per_1000: float            # CPU ms per 1,000 requests, everything it spent during the load
    above_idle_ms_per_1000: float  # the same less what it spends idle over as long: what grows with load
    rss_mb: float


@dataclass(frozen=True)
class CostModel:
    idle: tuple[Sample, Sample]
    load: tuple[Sample, Sample]
    requests: int

    def parts(self) -> list[PartCost]:
        (i0, i1), (l0, l1) = self.idle, self.load
        idle_s, load_s, per = i1.at - i0.at, l1.at - l0.at, 1000.0 / max(self.requests, 1)
        rows = []
        for part in l1.cpu_s:
            if part not in l0.cpu_s:
                continue                               # started or restarted during the load: not comparable
            measured_idle = idle_s > 0 and part in i0.cpu_s and part in i1.cpu_s
            idle = (i1.cpu_s[part] - i0.cpu_s[part]) / idle_s * 1000 if measured_idle else 0.0
            spent_ms = (l1.cpu_s[part] - l0.cpu_s[part]) * 1000
            rows.append(PartCost(part, idle, spent_ms * per, (spent_ms - idle * load_s) * per, l1.rss_mb[part]))
        return rows

    def table(self, title: str) -> Table:
        rows = self.parts()
        system = [r for r in rows if r.part != LOAD_GENERATOR]
        load_s = self.load[1].at - self.load[0].at
        table = Table("part", "CPU ms / 1,000 requests", "above idle", "idle CPU ms / s", "RSS MiB",
                      title=f"{title}: {self.requests:,} requests in {load_s:.1f} s, idle measured over "
                            f"{self.idle[1].at - self.idle[0].at:.1f} s")
        for r in sorted(system, key=lambda r: -r.ms_per_1000) + [r for r in rows if r.part == LOAD_GENERATOR]:
            table.add_row(r.part, f"{r.ms_per_1000:,.0f}", f"{r.above_idle_ms_per_1000:,.0f}",
                          f"{r.idle_ms_per_s:,.1f}", f"{r.rss_mb:,.0f}")
        total = PartCost("total (system)", sum(r.idle_ms_per_s for r in system), sum(r.ms_per_1000 for r in system),
                         sum(r.above_idle_ms_per_1000 for r in system), sum(r.rss_mb for r in system))
        table.add_row(total.part, f"{total.ms_per_1000:,.0f}", f"{total.above_idle_ms_per_1000:,.0f}",
                      f"{total.idle_ms_per_s:,.1f}", f"{total.rss_mb:,.0f}", style="bold")
        return table
