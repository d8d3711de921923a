"""The single embedded broker stopped for 10 s under load, then started again (docs/operations.md).

Requests keep coming during the outage from `scorestream publish` and from a ScoringClient: their producers
buffer and retry, so each is answered after the broker is back, late (past the SLA), once; nothing is lost, and
the decoy's archive still holds every request exactly once. Every part of the system rides through: none dies.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from scorestream import kafka, stack
from scorestream.broker import Broker
from scorestream.client import ScoringClient, assigned_consumer
from scorestream.contract import Result
from scorestream.publish import synthetic_requests
from scorestream.settings import StackSettings
from scorestream.synthetic import TransactionGenerator
from tests.integration.test_system import system  # noqa: F401 - the module's own system (`up` returned warmed up)
from tests.readback import count_keys

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]
SLA_MS = 400            # tests.integration.test_system.POLICY
OUTAGE_S = 10.0


def test_broker_stopped_for_10s_under_load_loses_nothing_and_answers_once(system, tmp_path):
    home, bootstrap, registry = system
    settings = StackSettings(home=home, kafka_port=int(bootstrap.rsplit(":", 1)[1]))
    results: Counter = Counter()
    by_id: dict[str, Result] = {}
    stop_reading = threading.Event()
    answers = assigned_consumer(registry.name("results"), bootstrap)

    def read() -> None:
        while not stop_reading.is_set():
            for msg in kafka.consume_ready(answers, 1000, 0.1):
                if not msg.error():
                    result = Result.from_json(msg.value())
                    results[result.request_id] += 1
                    by_id[result.request_id] = result
        answers.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    # `scorestream publish`: 40/s for 30 s, in its own process, as a producer would run it
    seed, count = random.randrange(10**6), 1200
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORESTREAM_")} | {
        "SCORESTREAM_HOME": str(home), "SCORESTREAM_BOOTSTRAP_SERVERS": bootstrap}
    # its output to a file, not a pipe read only at the end: librdkafka's logs of the outage could fill a pipe
    # and block the publisher
    publisher_log = tmp_path / "publish.log"
    with publisher_log.open("w") as log:
        publisher = subprocess.Popen([sys.executable, "-m", "scorestream.cli", "publish", "--synthetic", "--rate",
                                      "40", "--count", str(count), "--seed", str(seed)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
    published = [r.request_id for r in synthetic_requests(seed, count)]

    # a ScoringClient: 10/s from this process, all through the outage
    client = ScoringClient(bootstrap, registry)
    futures: dict[str, object] = {}
    submitted_at: dict[str, float] = {}
    payloads = iter(TransactionGenerator(random.randrange(10**6)))

    def submit_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sample = next(payloads)
            submitted_at[sample.request_id] = time.time()
            futures[sample.request_id] = client.submit(sample.payload, sample.request_id)
            time.sleep(0.1)

    broker = Broker(settings)
    submit_for(5.0)
    broker.stop()
    stopped_at = time.time()
    submit_for(OUTAGE_S)
    restarting_at = time.time()
    start_s = broker.start()
    submit_for(5.0)

    publisher.wait(timeout=300)
    out = publisher_log.read_text()
    assert publisher.returncode == 0, out
    assert f"delivered {count}, failed 0" in out, out
    # every future resolves (none lost); counted, not raised, so that a failure says where a request went
    deadline = time.monotonic() + 180
    unresolved = {rid: f for rid, f in futures.items() if not _resolves(f, deadline - time.monotonic())}
    client.close()
    sent = set(published) | set(futures)
    for _ in range(120):
        if set(results) >= sent:
            break
        time.sleep(1.0)
    time.sleep(2.0)                                     # would a second answer come? wait and see
    stop_reading.set()
    reader.join(10)

    lost = sent - set(results)
    if unresolved:
        archived = count_keys(registry.name("archive"), set(unresolved), bootstrap)
        pytest.fail(f"{len(unresolved)} of the client's {len(futures)} futures unresolved after 180 s: "
                    + "; ".join(f"{rid}: {_outcome(f)}, answered {results[rid]} times on scoring.results, "
                                f"archived {archived.get(rid, 0)} times" for rid, f in list(unresolved.items())[:5])
                    + f"; lost in all: {len(lost)}")
    doubled = {rid: n for rid, n in results.items() if rid in sent and n > 1}
    during = [rid for rid, at in submitted_at.items() if stopped_at + 0.5 < at < restarting_at - 0.5]
    late = [rid for rid in during if by_id[rid].latency_ms > SLA_MS]
    print(f"sent {len(sent)} ({count} by publish, {len(futures)} by ScoringClient), lost {len(lost)}, "
          f"doubled {len(doubled)}; {len(late)} of the {len(during)} submitted during the outage answered late; "
          f"outage {restarting_at - stopped_at + start_s:.1f} s (broker start {start_s:.1f} s); latency of those: "
          f"max {max(by_id[rid].latency_ms for rid in during):.0f} ms; rules of all answers: "
          f"{dict(Counter(by_id[rid].rule for rid in sent))}")
    assert not lost and not doubled
    assert during and len(late) == len(during), "requests sent during the outage are answered after it, late"

    archived = count_keys(registry.name("archive"), set(sent), bootstrap)
    copies = Counter(archived[rid] for rid in sent)
    assert set(copies) == {1}, f"the archive holds each request exactly once, not {dict(copies)} (copies: requests)"

    rows = {row.name: row.state for row in stack.status(settings)}
    assert all(state == "running" for state in rows.values()), f"every part rode through the outage: {rows}"


def _resolves(future, timeout_s: float) -> bool:
    try:
        return future.exception(timeout=max(timeout_s, 0.0)) is None
    except TimeoutError:
        return False


def _outcome(future) -> str:
    return "pending" if not future.done() else f"failed: {future.exception()}"
