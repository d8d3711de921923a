"""The load tests' precondition (tests/capacity.py): a CPU-starved host skips, a late system on a host with CPU
to spare does not."""

import threading
import time
from contextlib import contextmanager

import pytest

from scorestream.load import LoadReport
from scorestream.process import host_speed
from tests.capacity import require_capacity


def answers(latency_ms: float, published: int = 10) -> LoadReport:
    return LoadReport(300, 400, published=published, latencies_ms=[latency_ms] * published)


def after(seconds: float, report: LoadReport):
    """A load of `seconds` that gives `report`."""
    def load():
        time.sleep(seconds)
        return report
    return load


@contextmanager
def every_core_busy():
    """The host probe's spinning process per core, started before and ended after the block, as a saturated
    system keeps them."""
    spinning = threading.Thread(target=host_speed, args=(3.0,))
    spinning.start()
    time.sleep(0.5)
    yield
    spinning.join()


def test_late_answers_on_a_host_with_cpu_to_spare_are_the_systems_and_fail():
    assert require_capacity(after(0.5, answers(1000.0))).within_sla == 0.0    # no skip: the test goes on, fails


def test_late_answers_on_a_starved_host_skip_the_test_with_the_figures():
    with every_core_busy(), pytest.raises(pytest.skip.Exception, match=(
            r"no CPU for 300 requests/s now: of 10 offered first, 0.0% came within the SLA of 400 ms, with the "
            r"host's CPUs (9\d|100)% busy")):
        require_capacity(after(1.0, answers(1000.0)))


def test_a_test_that_needs_room_for_a_second_deployment_skips_on_a_host_without_it():
    with every_core_busy():
        assert require_capacity(after(0.5, answers(10.0))).within_sla == 1.0
        with pytest.raises(pytest.skip.Exception, match=r"no CPU to spare beside 300 requests/s now \(this test "
                                                        r"needs 20% of it for a second deployment\)"):
            require_capacity(after(0.5, answers(10.0)), spare=0.2)
