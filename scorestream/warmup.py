"""The one warm-up of the system, run by `up` before it returns (and by `bench` at its offered rate).

A young system answers late: its JVMs compile their hot paths (JIT) during the first minutes of traffic,
Python caches fill, consumers join their groups. Users' first requests should not pay for that, so after
starting the parts on the answer's path, `up` sends synthetic traffic until the system is steady:

1. until the preferred model answers (every part reads and the workers have joined their groups);
2. rounds of ROUND_S seconds at the warm-up rate until STEADY_ROUNDS rounds in a row answer every request,
   TARGET of them within the SLA, and, after a start of a Flink job's JVM, at least JVM_MIN_S have passed; or
   until the budget is spent (then it says so and returns: a busy host may
   never get there, and a late answer is still an answer). It says how busy the host's CPUs were in its
   rounds: a system that needs more CPU than the host gives never gets steady by waiting.

The warm-up traffic is ordinary synthetic requests: it is archived by the decoy and answered like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException

from scorestream.client import ScoringClient
from scorestream.errors import UserError
from scorestream.load import run_load
from scorestream.process import host_busy_since, host_cpu_jiffies
from scorestream.synthetic import TransactionGenerator, fresh_seed
from scorestream.topics import TopicRegistry

# At most this long (`up --warm-up`): a young system on this 2-core host got steady 70-85 s after `up` started
# its traffic, so with 60 s `make demo`'s first answers paid for the rest (docs/benchmarks.md). A host with CPU to
# spare stops far sooner; a saturated one spends it all.
BUDGET_S = 120.0
# After a Flink job's start, at least this long: two steady rounds come before its JVM's JIT is done. `make demo`'s
# first minute alternating: 98.35-100 % within the SLA when steady after 38-46 s, 99.95-100 % with this minimum
# (docs/benchmarks.md).
JVM_MIN_S = 60.0
ROUND_S = 3.0
STEADY_ROUNDS = 2
TARGET = 0.999
FIRST_ANSWER_TIMEOUT_S = 180.0
SATURATED = 0.9               # the host's CPUs this busy in the rounds: it has no CPU to spare


@dataclass(frozen=True)
class WarmUp:
    rounds: int
    seconds: float
    steady: bool
    last_within_sla: float        # share of the last round's requests answered within the SLA
    rate: float = 0.0
    host_busy: float = 0.0        # share of the host's CPU time taken (by anything) during the rounds

    def line(self) -> str:
        if self.steady:
            return f"warmed up in {self.seconds:.0f}s ({self.rounds} rounds of traffic): steady within the SLA"
        if self.rounds == 0:
            return (f"warm-up stopped after {self.seconds:.0f}s: the preferred model's first answer took the whole "
                    "budget, no round of traffic ran; give it more time with `up --warm-up SECONDS`")
        stopped = (f"warm-up stopped after {self.seconds:.0f}s ({self.rounds} rounds) without {STEADY_ROUNDS} "
                   f"steady rounds in a row (last {self.last_within_sla:.2%} within the SLA)")
        if self.host_busy >= SATURATED:
            return (f"{stopped}: the host's CPUs were {self.host_busy:.0%} busy in its rounds, so it has no CPU to "
                    f"spare for {self.rate:g} requests/s now (a young system's JIT compilers take part of it for "
                    "minutes): fewer models, a quieter host, or a lower rate")
        return (f"{stopped}; the host's CPUs were {self.host_busy:.0%} busy: give it more time with "
                "`up --warm-up SECONDS`")


def first_answer(bootstrap: str, sla_ms: float, registry: TopicRegistry | None = None,
                 timeout_s: float = FIRST_ANSWER_TIMEOUT_S) -> None:
    """Until the preferred path answers: the workers have joined their groups, the jobs read."""
    began = time.monotonic()
    payloads = iter(TransactionGenerator(fresh_seed()))
    try:
        client = ScoringClient(bootstrap, registry)
    except KafkaException as exc:
        raise UserError(f"no Kafka broker answers at {bootstrap} ({exc.args[0].str()}): is the system up?") from exc
    with client:
        while time.monotonic() - began < timeout_s:
            try:
                if client.score(next(payloads).payload, timeout=max(1.0, sla_ms / 100)).rule == "preferred":
                    return
            except TimeoutError:
                pass
    raise UserError(f"no answer from the preferred model after {timeout_s:.0f}s: `scorestream status` "
                    "and the logs under .scorestream/logs say which part is missing")


def another_round(steady_rounds: int, elapsed_s: float, budget_s: float, min_s: float = 0.0) -> bool:
    """The stopping rule: not yet steady, or steady before min_s, and the budget not spent.

    >>> another_round(2, 40.0, 120.0), another_round(2, 40.0, 120.0, min_s=60.0), another_round(1, 120.0, 120.0)
    (False, True, False)
    """
    return (steady_rounds < STEADY_ROUNDS or elapsed_s < min_s) and elapsed_s < budget_s


def warm_up(bootstrap: str, sla_ms: float, rate: float, budget_s: float, registry: TopicRegistry | None = None,
            on_round=None, min_s: float = 0.0) -> WarmUp:
    """The warm-up described above, at least min_s (JVM_MIN_S after a JVM's start) unless the budget is shorter;
    on_round(round, share within the SLA) after each round."""
    registry = registry or TopicRegistry.load()
    began = time.monotonic()
    first_answer(bootstrap, sla_ms, registry)
    rounds = steady = 0
    within = 0.0
    before = host_cpu_jiffies()
    while another_round(steady, time.monotonic() - began, budget_s, min_s):
        report = run_load(registry.name("requests"), registry.name("results"), rate, ROUND_S, sla_ms, bootstrap,
                          drain_s=2.0)   # a fresh seed each round (run_load's default)
        rounds += 1
        within = report.within_sla
        steady = steady + 1 if report.answered == report.published and within >= TARGET else 0
        if on_round:
            on_round(rounds, within)
    return WarmUp(rounds, time.monotonic() - began, steady >= STEADY_ROUNDS, within, rate, host_busy_since(before))
