"""The warm-up's outcome line: steady, not yet steady, or a host with no CPU to spare; the host probes."""

import os

from scorestream.process import host_cpu_jiffies
from scorestream.warmup import WarmUp


def test_the_line_tells_a_saturated_host_from_a_young_system():
    assert WarmUp(4, 21.0, True, 1.0, 200, 0.6).line().startswith("warmed up in 21s (4 rounds")
    young = WarmUp(12, 61.0, False, 0.995, 200, 0.62).line()
    assert "62% busy" in young and "more time with `up --warm-up SECONDS`" in young
    saturated = WarmUp(12, 61.0, False, 0.0, 200, 0.97).line()
    assert "97% busy" in saturated and "no CPU to spare for 200 requests/s now" in saturated
    no_round = WarmUp(0, 60.4, False, 0.0, 200, 0.0).line()
    assert "first answer took the whole budget, no round of traffic ran" in no_round and "0% busy" not in no_round


def test_host_cpu_jiffies_grow_with_work():
    busy0, total0 = host_cpu_jiffies()
    sum(i * i for i in range(3_000_000))
    busy1, total1 = host_cpu_jiffies()
    assert busy1 > busy0 and total1 - total0 >= busy1 - busy0 > 0


def test_the_single_core_probe_counts_loop_iterations():
    from scorestream.process import single_core_speed
    assert 0.1 < single_core_speed(0.2) < 1000


def test_the_host_probe_measures_every_core_at_once():
    from scorestream.process import host_speed
    speeds = host_speed(0.2)
    assert len(speeds) == os.cpu_count() and speeds == sorted(speeds, reverse=True) and min(speeds) > 0.1
