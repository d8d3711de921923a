"""The model worker: consume scoring.features, micro-batch, score, write annotated scores.

At least once, never less: a batch's offsets are committed only after every
score and dead letter of it was acknowledged by the broker (idempotent
producer, acks=all). Batches are pipelined: while batch k's outputs are on
the wire, batch k+1 is scored; offsets advance strictly in batch order, so a
batch acknowledged early waits for the ones before it. A worker killed
between acknowledgement and commit scores those records again after restart,
so `scoring.scores` may hold a request twice for one model version; readers
dedupe by (request_id, model, version).

One consumer group per model version (`scorestream.score.<name>@<version>`):
every version sees every request, replicas of one version share partitions.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.core import Stamp, score_batch
from models.metrics import WorkerMetrics, observe_many
from models.registry import LoadedModel
from scorestream import kafka
from scorestream.contract import KafkaRecord, now_ms
from scorestream.deadletter import DeadLetterSink
from scorestream.topics import TopicRegistry

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 8          # batches produced but not yet acknowledged; more waits (bounded memory, bounded redo)
COMMIT_EVERY_S = 0.1       # async commits at most this often; a crash redoes at most this much more


class WorkerSettings(BaseSettings):
    """Every field is a `scorestream worker` flag and a SCORESTREAM_WORKER_<FIELD> variable."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_WORKER_", frozen=True, extra="ignore")

    model: str
    role: Literal["candidate", "canary"] = "candidate"
    batch_size: int = 1000              # most records per micro-batch
    batch_ms: float = 5.0               # longest wait for a first record; the batch is what is fetched by then
    fetch_wait_ms: int = 10             # how long the broker may hold a fetch to gather features; 0: every record wakes it
    scores_partitioning: Literal["batch", "key"] = "batch"   # batch: a batch's scores in one partition, in turn
    metrics_port: int = 0               # 0: no /metrics endpoint
    registry_dir: Path | None = None    # None: models/registry of this package
    session_timeout_ms: int = 10_000    # how soon a dead replica's partitions move to the others
    instance_id: str = ""               # static group membership: a restarted replica takes its partitions back
    status_interval_s: float = 30.0     # how often a summary line is logged
    rejoin_limit_s: float = 30.0        # a consumer out of its group this long is taken for stuck and replaced


class DeliveryFailed(RuntimeError):
    """Outputs the broker did not acknowledge: exit without committing, a restart rescores the batch."""


class ConsumerFailed(RuntimeError):
    """The consumer kept failing fatally however often it was replaced: exit without committing."""


@dataclass
class WorkerStats:
    records_in: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0


@dataclass
class InFlight:
    """One batch whose outputs are on their way; its offsets are safe to commit once `waiting` is 0."""

    offsets: dict[tuple[str, int], int]      # next offset per (topic, partition)
    written_ms: np.ndarray                   # Kafka timestamps of the scored records, for the latency
    n_in: int
    n_scored: int
    n_dead: int
    model_errors: int
    started: float
    waiting: int = 0
    failed: list[str] = field(default_factory=list)

    def delivered(self, err, msg) -> None:
        """Producer delivery callback of each output of this batch."""
        self.waiting -= 1
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err}")


def stage_id(model_ref: str) -> str:
    return f"score.{model_ref}"


class Worker:
    def __init__(self, settings: WorkerSettings, model: LoadedModel, topics: TopicRegistry | None = None,
                 bootstrap: str | None = None):
        self.settings, self.model = settings, model
        self.stage = stage_id(model.ref)
        self.group = f"scorestream.{self.stage}"
        host = socket.gethostname()
        self.stamp = Stamp(model.name, model.version, settings.role, f"{host}-{os.getpid()}", host)
        topics = topics or TopicRegistry.load()
        self.features_topic, self.scores_topic = topics.name("features"), topics.name("scores")
        self.producer = kafka.producer(bootstrap, **{"client.id": self.stamp.worker})
        self.deadletters = DeadLetterSink(self.producer, topics.name("deadletter"), self.stage)
        self._consumer_config = {"session.timeout.ms": settings.session_timeout_ms, "client.id": self.stamp.worker,
                                 "partition.assignment.strategy": "cooperative-sticky", "on_commit": self._on_commit,
                                 **kafka.gathered_fetch(wait_ms=settings.fetch_wait_ms)}
        if settings.instance_id:
            self._consumer_config["group.instance.id"] = settings.instance_id
        self._bootstrap = bootstrap
        self.consumer = kafka.consumer(self.group, bootstrap, **self._consumer_config)
        self.consumer_replacements = 0
        self.fatal_recoveries = kafka.Recoveries()    # too many lately: another member has our id
        self.fatal: KafkaError | None = None           # the consumer's fatal error: it is replaced
        self.metrics = WorkerMetrics.for_model(model.name, model.version)
        self.stats = WorkerStats()
        self.stopping = False
        self.failed = False
        self.in_flight: deque[InFlight] = deque()
        self.acked: dict[tuple[str, int], int] = {}     # next offsets whose outputs are all acknowledged
        self.dirty = False                              # acked moved since the last commit
        self.scores_partitions: list[int] = []         # of scoring.scores, read once (scores_partitioning=batch)
        self._metadata_retry = 0.0
        self.batches_out = 0

    def stop(self, *_args) -> None:
        """Finish the current batch, commit, leave the group (signal handler: only sets a flag)."""
        self.stopping = True

    def run(self) -> WorkerStats:
        self._subscribe()
        log.info("%s: worker %s (%s) consuming %s as group %s, writing %s", self.stage, self.stamp.worker,
                 self.stamp.role, self.features_topic, self.group, self.scores_topic)
        next_lag = next_status = next_commit = time.monotonic()
        # Start-up objects (onnxruntime, numpy, the model) never die: keep them out of
        # the collector's full passes, which otherwise rescan them every few batches.
        gc.freeze()
        try:
            while not self.stopping:
                try:
                    messages = kafka.consume_ready(self.consumer, self.settings.batch_size,
                                                   self.settings.batch_ms / 1000)
                except KafkaException as exc:
                    if not kafka.is_fatal(exc.args[0]):
                        raise
                    self.fatal, messages = exc.args[0], []
                if messages:
                    self.submit(messages)
                self.producer.poll(0)                   # serve delivery callbacks
                self._settle()
                while len(self.in_flight) > MAX_IN_FLIGHT:
                    self.producer.poll(0.01)
                    self._settle()
                now = time.monotonic()
                if self.fatal is not None:
                    self._replace_fatal_consumer()
                elif self.membership.stuck(now):
                    self._replace_consumer(f"out of its group for {self.membership.out_for(now):.0f}s")
                if self.dirty and now >= next_commit:
                    self._commit(asynchronous=True)
                    next_commit = now + COMMIT_EVERY_S
                if now >= next_lag:
                    self._update_lag()
                    next_lag = now + 1.0
                if now >= next_status:
                    self._log_status()
                    next_status = now + self.settings.status_interval_s
        finally:
            gc.unfreeze()       # (for a worker run inside a longer-lived process, as the tests do)
            self._close()
        return self.stats

    def submit(self, messages: list) -> None:
        """Score one batch and hand its outputs to the producer; `_settle` commits it once acknowledged."""
        started, received_at = time.perf_counter(), now_ms()
        records = [KafkaRecord.from_message(m) for m in messages if not self._is_error(m)]
        if not records:
            return
        result = score_batch(self.model, records, self.stamp, received_at)
        self.metrics.predict.observe(time.perf_counter() - started)
        offsets: dict[tuple[str, int], int] = {}
        for r in records:
            offsets[(r.topic, r.partition)] = r.offset + 1     # a partition's records arrive in order
        batch = InFlight(offsets, np.array([r.timestamp or 0 for r, _ in result.scored], dtype=np.float64),
                         len(records), len(result.scored), len(result.rejected), result.model_errors, started,
                         waiting=len(result.scored) + len(result.rejected))
        self.in_flight.append(batch)
        partition = self._scores_partition()
        for _, score in result.scored:
            kafka.produce(self.producer, self.scores_topic, score.to_record(), on_delivery=batch.delivered,
                          partition=partition)
        for record, reason in result.rejected:
            self.deadletters.send(record, reason, on_delivery=batch.delivered)
        self.metrics.records_in.inc(len(records))
        self.metrics.batch_size.observe(len(records))

    def _scores_partition(self) -> int:
        """Where this batch's scores go: -1 (the request id's partition) or, by batch, the next partition in
        turn. librdkafka puts one partition in a produce request, so a batch spread over four partitions by key
        costs the broker four requests; the rendezvous keys the scores itself and takes its cut on the
        requests, so it needs no score in its key's partition."""
        if self.settings.scores_partitioning == "key":
            return -1
        if not self.scores_partitions and time.monotonic() >= self._metadata_retry:
            self._metadata_retry = time.monotonic() + 10.0
            try:
                self.scores_partitions = kafka.partitions(self.producer, self.scores_topic, timeout_s=5)
            except KafkaException as exc:
                log.warning("%s: no metadata of %s (%s): scores go by key meanwhile", self.stage,
                            self.scores_topic, exc)
        if not self.scores_partitions:
            return -1
        self.batches_out += 1
        return self.scores_partitions[self.batches_out % len(self.scores_partitions)]

    def _subscribe(self) -> None:
        self.membership = kafka.GroupMembership(self.settings.rejoin_limit_s)
        self.consumer.subscribe([self.features_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _replace_fatal_consumer(self) -> None:
        """A static member whose session expired during a broker outage rejoins as a new member with its own
        group.instance.id, and its next commit is fenced by that new self: librdkafka takes it as fatal. A new
        consumer with the same id takes the partitions back at once. Many within minutes: another worker has our id."""
        error, self.fatal = self.fatal, None
        if self.fatal_recoveries.add():
            self.failed = True
            member = self.settings.instance_id
            raise ConsumerFailed(f"{self.stage}: the consumer failed {self.fatal_recoveries.recent()} times in "
                                 f"{self.fatal_recoveries.window_s:.0f}s ({error.str()})"
                                 + (f": is another worker running with --instance-id {member}?" if member else ""))
        self._replace_consumer(f"failed ({error.str()})")

    def _replace_consumer(self, why: str) -> None:
        """A new consumer for one that is stuck out of its group (rejoin_limit_s; kafka.GroupMembership: librdkafka
        can fail to rejoin after the coordinator's broker restarts) or failed. What was scored is acknowledged
        first; its partitions are no longer ours, so their next owner (maybe the new consumer) rescores from the
        last commit."""
        self.consumer_replacements += 1
        log.warning("%s: consumer %s; a new one resumes from the committed offsets", self.stage, why)
        self._drain()
        self.acked.clear()
        self.dirty = False
        if not kafka.close_within(self.consumer):
            log.warning("%s: the old consumer did not close within 10s; left behind", self.stage)
        self.consumer = kafka.consumer(self.group, self._bootstrap, **self._consumer_config)
        self._subscribe()

    def _settle(self) -> None:
        """Move the offsets of the leading acknowledged batches to `acked`, in batch order."""
        while self.in_flight and self.in_flight[0].waiting == 0:
            batch = self.in_flight.popleft()
            if batch.failed:
                self.failed = True
                self.metrics.error("delivery", len(batch.failed))
                raise DeliveryFailed(f"{self.stage}: {len(batch.failed)} outputs not acknowledged (first: "
                                     f"{batch.failed[0]}); offsets not committed, a restart rescores them")
            self.acked.update(batch.offsets)
            self.dirty = True
            self._count(batch)

    def _count(self, batch: InFlight) -> None:
        s, m = self.stats, self.metrics
        s.batches += 1
        s.records_in += batch.n_in
        s.scored += batch.n_scored
        s.dead_lettered += batch.n_dead
        m.records_out.inc(batch.n_scored)
        if batch.n_dead:
            m.dead.inc(batch.n_dead)
        if batch.model_errors:
            m.error("model", batch.model_errors)
        written = batch.written_ms[batch.written_ms > 0]
        observe_many(m.latency, np.maximum(0.0, now_ms() - written) / 1000)
        m.batch.observe(time.perf_counter() - batch.started)

    def _drain(self) -> None:
        # Every in-flight record is either acknowledged or reported failed within
        # message.timeout.ms: no third outcome, so waiting here cannot hang forever.
        while self.producer.flush(1.0) > 0:
            pass
        self._settle()

    def _commit(self, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        todo = [TopicPartition(t, p, o) for (t, p), o in self.acked.items() if only is None or (t, p) in only]
        if not todo:
            return
        self.dirty = False
        try:
            self.consumer.commit(offsets=todo, asynchronous=asynchronous)
        except KafkaException as exc:
            self._on_commit(exc.args[0], todo)

    def _on_commit(self, err, partitions) -> None:
        if err is not None and kafka.is_fatal(err):
            self.fatal = err
        elif err is not None:
            # Retried with the next commit; if the partition moves meanwhile, its
            # new owner rescores from the last commit: doubles, no loss.
            log.warning("%s: commit failed, will retry: %s", self.stage, err)
            self.metrics.error("commit")
            self.dirty = True

    def _is_error(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return False
        if kafka.is_fatal(err):
            self.fatal = err
            return True
        log.warning("%s: consumer error: %s", self.stage, err)
        self.metrics.error("consume")
        return True

    def _on_assign(self, _consumer, partitions) -> None:
        self.membership.joined()
        log.info("%s: assigned %s", self.stage, _names(partitions))

    def _on_revoke(self, _consumer, partitions) -> None:
        self._drain()                   # what was scored for them is acknowledged, then committed
        self._commit(asynchronous=False, only={(tp.topic, tp.partition) for tp in partitions})
        self._forget(partitions)
        log.info("%s: revoked %s", self.stage, _names(partitions))

    def _on_lost(self, _consumer, partitions) -> None:
        self.membership.left()
        self._forget(partitions)
        log.warning("%s: lost %s (their new owner rescores from the last commit)", self.stage, _names(partitions))

    def _forget(self, partitions) -> None:
        for tp in partitions:
            self.acked.pop((tp.topic, tp.partition), None)

    def _update_lag(self) -> None:
        """Sum over assigned partitions of high watermark - position (cached watermarks: no broker call)."""
        lag = 0
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                position = tp.offset if tp.offset >= 0 else low
                if high >= 0 and position >= 0:
                    lag += max(0, high - position)
        except KafkaException as exc:
            log.debug("%s: lag not updated: %s", self.stage, exc)
            return
        self.metrics.lag.set(lag)

    def _log_status(self) -> None:
        s = self.stats
        log.info("%s: %d batches, %d in, %d scored, %d dead-lettered", self.stage, s.batches, s.records_in,
                 s.scored, s.dead_lettered)

    def _close(self) -> None:
        try:
            if not self.failed:
                self._drain()
                self._commit(asynchronous=False)
        finally:
            # Leaves the group: the other replicas take the partitions now. Bounded: with the broker down,
            # librdkafka's close waits for the coordinator without end, and a stopping worker must exit.
            if not kafka.close_within(self.consumer):
                log.warning("%s: the consumer did not leave its group within 10s (broker down?); stopping anyway",
                            self.stage)
        self._log_status()
        log.info("%s: worker %s stopped", self.stage, self.stamp.worker)


def _names(partitions) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def run(settings: WorkerSettings, model: LoadedModel) -> WorkerStats:
    """Run a worker in this process until SIGTERM or SIGINT; the process entry point."""
    worker = Worker(settings, model)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    return worker.run()
