"""savepoints.bench's summary of the answers around an upgrade: pure counting, no Kafka."""

import time

from savepoints.bench import Sent, SwapLoad
from savepoints.timeline import CpuTrace, timeline


def _load() -> SwapLoad:
    t = 1_800_000_000_000          # a whole second, in ms
    sent = {
        "a": Sent(t, answers=[(t + 20, "old")]),
        "b": Sent(t + 10, answers=[(t + 10 + 120, "old")]),            # late
        "c": Sent(t + 20, answers=[(t + 20 + 200, "new")]),            # later than the SLA + 50 ms
        "d": Sent(t + 1000, answers=[(t + 1000 + 30, "new"), (t + 1000 + 40, "new")]),    # doubled
        "e": Sent(t + 1500),                                           # lost
    }
    return SwapLoad(sent, 100.0)


def test_summary_counts_answers_later_than_the_sla_plus_50_ms():
    load = _load()
    assert "later than the SLA + 50 ms" in load.summary()
    assert ", 1 later than the SLA + 50 ms" in load.summary()
    assert load.lost == ["e"] and load.doubled == ["d"]


def test_the_timeline_names_the_second_and_who_answered():
    lines = timeline(_load())
    assert len(lines) == 1                      # the second without a late answer is left out
    second = time.strftime("%H:%M:%S", time.localtime(1_800_000_000))
    assert lines[0].split()[0] == second
    assert "2 of 3 late" in lines[0] and "   1 later than SLA + 50 ms" in lines[0]
    assert "(old 1, new 1)" in lines[0] or "(new 1, old 1)" in lines[0]


def test_the_timeline_puts_the_upgrade_steps_and_the_cpu_in_place():
    cpu = CpuTrace()
    cpu.seconds[1_800_000_000] = (0.97, {"kafka": 480.0, "flink.rendezvous.next": 310.0, "score.a@1": 100.0,
                                         "score.b@2": 120.0, "decoy": 5.0})
    at = time.strftime("%H:%M:%S", time.localtime(1_799_999_999))
    output = f"plan line without a clock\n{at}.250 starting deployment abc at idle priority\n"
    lines = timeline(_load(), {"": output}, cpu, owner=lambda s: "mine")
    assert len(lines) == 2 and lines[0].endswith("-- starting deployment abc at idle priority")
    assert "(mine 2)" in lines[1]
    assert "cpu ms: host  97% | kafka 480 flink.rendezvous.next 310 workers 220" in lines[1]    # decoy under 20
    assert "plan line" not in "".join(lines)
