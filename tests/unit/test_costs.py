"""The cost model's arithmetic, and the process counters it reads (this process's own)."""

from __future__ import annotations

import os
import time

import pytest

from scorestream.costs import LOAD_GENERATOR, CostModel, Sample
from scorestream.process import cpu_seconds, rss_bytes


def test_cpu_per_thousand_requests_idle_cost_and_what_grows_with_load():
    idle = (Sample(0.0, {"kafka": 10.0, "decoy": 1.0}, {}), Sample(10.0, {"kafka": 10.5, "decoy": 1.0}, {}))
    load = (Sample(20.0, {"kafka": 11.0, "decoy": 1.0, "flink.rendezvous": 3.0}, {}),
            Sample(40.0, {"kafka": 17.0, "decoy": 1.2, "flink.rendezvous": 9.0, "late": 1.0},
                   {"kafka": 1024.0, "decoy": 80.0, "flink.rendezvous": 900.0, "late": 5.0}))
    parts = {p.part: p for p in CostModel(idle, load, requests=10_000).parts()}
    assert set(parts) == {"kafka", "decoy", "flink.rendezvous"}        # "late" started during the load
    kafka = parts["kafka"]
    assert kafka.idle_ms_per_s == pytest.approx(50.0)                  # 0.5 s of CPU in 10 s
    assert kafka.ms_per_1000 == pytest.approx(600.0)                    # 6 s for 10,000 requests
    assert kafka.above_idle_ms_per_1000 == pytest.approx(500.0)         # less 50 ms/s over the 20 s of load
    assert parts["flink.rendezvous"].idle_ms_per_s == 0.0               # not running when idle was measured
    assert parts["decoy"].rss_mb == 80.0


def test_the_table_has_every_part_a_total_and_the_load_generator_apart():
    s = Sample(0.0, {"kafka": 0.0, LOAD_GENERATOR: 0.0}, {"kafka": 1.0, LOAD_GENERATOR: 1.0})
    e = Sample(1.0, {"kafka": 1.0, LOAD_GENERATOR: 1.0}, {"kafka": 1.0, LOAD_GENERATOR: 1.0})
    table = CostModel((s, s), (s, e), 1000).table("t")
    assert [c.header for c in table.columns][:2] == ["part", "CPU ms / 1,000 requests"]
    assert list(table.columns[0].cells) == ["kafka", LOAD_GENERATOR, "total (system)"]
    assert list(table.columns[1].cells) == ["1,000", "1,000", "1,000"]      # the total leaves the generator out


def test_counters_of_this_process():
    before = cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.2
    assert rss_bytes(os.getpid()) > 10 * 2**20


def test_a_home_where_nothing_runs_has_no_parts(tmp_path):
    from scorestream import stack
    from scorestream.settings import StackSettings
    assert stack.pids(StackSettings(home=tmp_path)) == {}
