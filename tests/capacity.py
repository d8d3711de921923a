"""The load tests' precondition: the system, as it runs on this host now, carries the test's rate, with CPU to
spare where the test starts a second deployment beside it.

This machine is a shared VM whose speed moves by half within the hour (docs/benchmarks.md, host speed). On a
host that cannot give the system the CPU a rate needs, an upgrade or a learner beside it never catches up, and
the test would end on a timeout that names no cause. So such a test first offers its rate for a few seconds
and is skipped, with the figures, when the host's CPUs were taken: at least BUSY with fewer than LEAST of the
answers within the SLA (no CPU for the rate), or more than 1 - spare (no room for a new version, which starts
at idle priority). A system that answers late on a host with CPU to spare still fails.

Before that, warm_up_at warms the system at the test's own rate: `up` warms it at 200/s, and a young system's
JIT compilers take a share of the host for minutes (docs/benchmarks.md), so a check right after `up` judged
their work, not the system's.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from scorestream.load import LoadReport
from scorestream.process import host_busy_since, host_cpu_jiffies
from scorestream.topics import TopicRegistry
from scorestream.warmup import SATURATED as BUSY     # the host's CPUs this busy: no CPU to spare, as `up` says
from scorestream.warmup import warm_up

LEAST = 0.9
WARM_UP_S = 120.0


def warm_up_at(rate: float, sla_ms: float, bootstrap: str, registry: TopicRegistry) -> None:
    """`up`'s warm-up (scorestream/warmup.py) at the test's rate, for at most WARM_UP_S; what it found is printed."""
    print(warm_up(bootstrap, sla_ms, rate, WARM_UP_S, registry).line())


def busy_during(load: Callable[[], LoadReport]) -> tuple[LoadReport, float]:
    """Run `load`: its report, and how busy the host's CPUs were meanwhile (0..1)."""
    before = host_cpu_jiffies()
    report = load()
    return report, host_busy_since(before)


def require_capacity(load: Callable[[], LoadReport], spare: float = 0.0) -> LoadReport:
    """Run `load` (a few seconds at the test's rate); skip the test when the host had no CPU for it, or less
    than `spare` of its CPUs left beside it."""
    report, busy = busy_during(load)
    figures = (f"of {report.published} offered first, {report.within_sla:.1%} came within the SLA of "
               f"{report.sla_ms:.0f} ms, with the host's CPUs {busy:.0%} busy (docs/benchmarks.md, host speed)")
    if report.within_sla < LEAST and busy >= BUSY:
        pytest.skip(f"the host has no CPU for {report.offered_rate:g} requests/s now: {figures}")
    if busy > 1 - spare:
        pytest.skip(f"the host has no CPU to spare beside {report.offered_rate:g} requests/s now (this test needs "
                    f"{spare:.0%} of it for a second deployment): {figures}")
    return report


def judge_latency(on_time: bool, report: LoadReport, busy: float) -> None:
    """A latency criterion that judges the system, not the host: a miss fails unless the host's CPUs were taken
    (at least BUSY) during the load, when the figures are printed instead (as require_capacity skips)."""
    figures = (f"{report.within_sla:.1%} of {report.published} within the SLA of {report.sla_ms:.0f} ms at "
               f"{report.offered_rate:g}/s, p95 {float(np.percentile(report.latencies_ms, 95)):.0f} ms, with the "
               f"host's CPUs {busy:.0%} busy")
    if not on_time and busy >= BUSY:
        print(f"latency not judged, the host had no CPU for it: {figures} (docs/benchmarks.md, host speed)")
        return
    assert on_time, figures
