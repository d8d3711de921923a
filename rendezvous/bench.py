"""Two rendezvous jobs side by side, to judge a setting (docs/benchmarks.md).

    scorestream up
    python -m rendezvous.bench --a SCORESTREAM_FLINK_BUFFER_TIMEOUT_MS=5 --b SCORESTREAM_FLINK_BUFFER_TIMEOUT_MS=1

On a shared 2-core machine, two whole-system runs a few minutes apart differ by more than most settings do.
Here two extra rendezvous jobs, one per setting (environment variables), read the same requests and scores
of the running stack at the same time, each in its own consumer group from the newest offset, and write
their own results topics. Each round publishes synthetic requests at --rate, then reports per job the CPU
of its process tree (from /proc) and the latency it measured itself (request ts -> answer). The stack's own
rendezvous keeps running (stopping it would leave it a backlog to catch up, answering late), so three jobs
share the cores: keep --rate well below what the system takes alone.

    python -m rendezvous.bench --floors

runs the job (A) beside the floors of rendezvous/floors.py instead of B: what its Kafka hop alone (java), a
Python call per record (python) and its state and timer pattern (python_state) cost on the same traffic.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
import uuid

import click
from confluent_kafka.admin import NewTopic

from rendezvous.policy import DEFAULT_PATH, Policy
from scorestream import flink, kafka
from scorestream.client import assigned_consumer, follow
from scorestream.process import ManagedProcess, cpu_seconds
from scorestream.publish import publish, synthetic_requests
from scorestream.settings import KafkaSettings, StackSettings
from scorestream.topics import TopicRegistry

FLOOR_KINDS = ("java", "python", "python_state")     # rendezvous.floors.KINDS, without importing pyflink here


def _env(assignments: tuple[str, ...]) -> dict[str, str]:
    env = dict(os.environ)
    for a in assignments:
        name, sep, value = a.partition("=")
        if not sep:
            raise click.BadParameter(f"{a!r}: expected NAME=VALUE")
        env[name] = value
    return env


def _serve(tag: str) -> None:
    """One side job: the rendezvous graph (or a floor, by the tag's kind) under its own group and results topic
    (run in a child process)."""
    from rendezvous import floors
    from rendezvous.job import KEYED_TOPICS, build        # pyflink: only in the side jobs' processes

    registry = TopicRegistry.load()
    kind = _kind(tag)
    if kind in floors.KINDS:
        keyed = [registry.name(t) for t in KEYED_TOPICS]      # what the job reads
        flink.run_job(f"rendezvous-{tag}", lambda env: floors.build(env, kind, keyed, f"scorestream.rendezvous.{tag}",
                                                                    KafkaSettings().bootstrap(),
                                                                    _results_topic(registry, tag)))
        return
    topics = dict(registry.topics)
    topics["results"] = dataclasses.replace(registry["results"], name=_results_topic(registry, tag))
    policy = Policy.load(DEFAULT_PATH)
    flink.run_job(f"rendezvous-{tag}", lambda env: build(env, TopicRegistry(topics), KafkaSettings().bootstrap(),
                                                         policy, group=f"scorestream.rendezvous.{tag}",
                                                         start="latest"))


def _kind(tag: str) -> str:
    return tag.rpartition("-")[0]


def _results_topic(registry, tag: str) -> str:
    return f"{registry.name('results')}.{tag}"


def _latencies(consumer) -> list[float]:
    return [r.latency_ms for r in follow(consumer, idle_s=3.0)]


@click.command()
@click.option("--a", "a_env", multiple=True, help="NAME=VALUE for job A (repeatable).")
@click.option("--b", "b_env", multiple=True, help="NAME=VALUE for job B (repeatable).")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Requests per second in each round.")
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds of each round.")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--warm-up", "warm_up_s", type=float, default=60.0, show_default=True,
              help="Seconds of traffic first, not counted (the JIT of fresh JVMs).")
@click.option("--floors", is_flag=True, help="Job A beside the floors of rendezvous/floors.py instead of B.")
@click.option("--serve", hidden=True)
def main(a_env, b_env, rate, duration, rounds, warm_up_s, floors, serve) -> None:
    """Run two rendezvous jobs beside the stack, one per setting, on the same traffic; compare CPU and latency."""
    if serve:
        _serve(serve)
        return
    registry = TopicRegistry.load()
    sla_ms = Policy.load(DEFAULT_PATH).sla_ms            # the side jobs run the default policy file
    if ManagedProcess("flink.rendezvous", StackSettings().home).pid() is None:
        raise click.ClickException("the stack's rendezvous is not running: run `scorestream up` first")
    run = uuid.uuid4().hex[:6]
    jobs = {f"A-{run}": _env(a_env)} | ({f"{kind}-{run}": _env(()) for kind in FLOOR_KINDS} if floors
                                       else {f"B-{run}": _env(b_env)})
    admin = kafka.admin()
    for f in admin.create_topics([NewTopic(_results_topic(registry, t), 1, 1) for t in jobs]).values():
        f.result()
    procs = {t: subprocess.Popen([sys.executable, "-m", "rendezvous.bench", "--serve", t], env=env,
                                 stdout=subprocess.PIPE, text=True) for t, env in jobs.items()}
    try:
        for t, p in procs.items():
            line = p.stdout.readline()
            if "submitted" not in line:
                raise click.ClickException(f"job {t} did not start: {line.strip() or p.wait()}")
        b = "the floors" if floors else " ".join(b_env) or "as is"
        click.echo(f"A: {' '.join(a_env) or 'as is'}   B: {b}   warming up {warm_up_s:g}s")
        publish(synthetic_requests(seed=0, count=int(rate * warm_up_s)), registry.name("requests"), rate=rate)
        time.sleep(3)
        rows = {t: [] for t in jobs}
        answering = [t for t in jobs if _kind(t) not in FLOOR_KINDS]    # a floor's results are requests
        for round_ in range(1, rounds + 1):
            consumers = {t: assigned_consumer(_results_topic(registry, t)) for t in answering}
            cpu0, t0 = {t: cpu_seconds(p.pid) for t, p in procs.items()}, time.monotonic()
            publish(synthetic_requests(seed=round_, count=int(rate * duration)), registry.name("requests"), rate=rate)
            cpu = {t: (cpu_seconds(p.pid) - cpu0[t]) / (time.monotonic() - t0) for t, p in procs.items()}
            for t in jobs:
                if t not in consumers:
                    rows[t].append((100 * cpu[t],))
                    click.echo(f"round {round_} {_kind(t)}: CPU {100 * cpu[t]:.1f}%")
                    continue
                lat = sorted(_latencies(consumers[t]))
                q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [float("nan")] * 99
                row = (100 * cpu[t], q[49], q[89], q[98], 100 * sum(x <= sla_ms for x in lat) / max(1, len(lat)))
                rows[t].append(row)
                click.echo(f"round {round_} {_kind(t)}: {len(lat)} answers  CPU {row[0]:.1f}%  p50 {row[1]:.1f}  "
                           f"p90 {row[2]:.1f}  p99 {row[3]:.1f} ms  within the SLA {row[4]:.2f}%")
        for t, r in rows.items():
            med = [statistics.median(col) for col in zip(*r)]
            if len(med) == 1:
                click.echo(f"median {_kind(t)}: CPU {med[0]:.1f}%")
                continue
            click.echo(f"median {_kind(t)}: CPU {med[0]:.1f}%  p50 {med[1]:.1f}  p90 {med[2]:.1f}  "
                       f"p99 {med[3]:.1f} ms  within the SLA {med[4]:.2f}%")
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(30)
        admin.delete_topics([_results_topic(registry, t) for t in jobs])
        groups = admin.delete_consumer_groups([f"scorestream.rendezvous.{t}{end}" for t in jobs
                                               for end in ("", ".control", ".posteriors")])
        for future in groups.values():
            future.exception(10)         # wait; a group that never committed is not there to delete


if __name__ == "__main__":
    main()
