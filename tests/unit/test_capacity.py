"""The load tests' precondition (tests/capacity.py): a CPU-starved host skips, a late system on a host with CPU
to spare does not."""

import time

import pytest

from scorestream.load import LoadReport
from scorestream.process import host_speed
from tests.capacity import require_capacity


def late(published: int = 10) -> LoadReport:
    return LoadReport(300, 400, published=published, latencies_ms=[1000.0] * published)


def test_late_answers_on_a_host_with_cpu_to_spare_are_the_systems_and_fail():
    def idle_host():
        time.sleep(0.5)
        return late()
    assert require_capacity(idle_host).within_sla == 0.0    # no skip: the test goes on and fails on its own terms


def test_late_answers_on_a_starved_host_skip_the_test_with_the_figures():
    def load_on_every_core():
        host_speed(0.5)          # every core busy meanwhile, as a saturated system keeps them
        return late()
    with pytest.raises(pytest.skip.Exception, match=r"no CPU for 300 requests/s now: of 10 offered first, 0.0% "
                                                    r"came within the SLA of 400 ms, with the host's CPUs (9\d|100)% busy"):
        require_capacity(load_on_every_core)


def test_a_test_that_needs_room_for_a_second_deployment_skips_on_a_host_without_it():
    def on_time_on_every_core():
        host_speed(0.5)
        return LoadReport(300, 400, published=10, latencies_ms=[10.0] * 10)
    assert require_capacity(on_time_on_every_core).within_sla == 1.0
    with pytest.raises(pytest.skip.Exception, match=r"no CPU to spare beside 300 requests/s now \(this test needs "
                                                    r"20% of it for a second deployment\)"):
        require_capacity(on_time_on_every_core, spare=0.2)
