"""The model worker: consume scoring.features, micro-batch, score, write annotated scores.

At least once, never less: a batch's offsets are committed only after every
score and dead letter of it was acknowledged by the broker (idempotent
producer, acks=all). A worker killed between the acknowledgement and the
commit scores those records again after restart, so `scoring.scores` may
hold a request twice for one model version; readers dedupe by
(request_id, model, version).

One consumer group per model version (`scorestream.score.<name>@<version>`):
every version sees every request, replicas of one version share partitions.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from confluent_kafka import KafkaException, TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.core import Stamp, score_batch
from models.metrics import WorkerMetrics
from models.registry import LoadedModel
from scorestream import kafka
from scorestream.contract import KafkaRecord, now_ms
from scorestream.deadletter import DeadLetterSink
from scorestream.topics import TopicRegistry

log = logging.getLogger(__name__)


class WorkerSettings(BaseSettings):
    """Every field is a `scorestream worker` flag and a SCORESTREAM_WORKER_<FIELD> variable."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_WORKER_", frozen=True, extra="ignore")

    model: str
    role: Literal["candidate", "canary"] = "candidate"
    batch_size: int = 1000              # most records per micro-batch
    batch_ms: float = 5.0               # longest wait for a batch to fill: the latency batching may add
    metrics_port: int = 0               # 0: no /metrics endpoint
    registry_dir: Path | None = None    # None: models/registry of this package
    session_timeout_ms: int = 10_000    # how soon a dead replica's partitions move to the others
    instance_id: str = ""               # static group membership: a restarted replica takes its partitions back
    status_interval_s: float = 30.0     # how often a summary line is logged


class DeliveryFailed(RuntimeError):
    """Outputs the broker did not acknowledge: exit without committing, a restart rescores the batch."""


@dataclass
class WorkerStats:
    records_in: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0


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
        # Only failed deliveries call back: a per-record callback would cost more than the scoring.
        self.producer = kafka.producer(bootstrap, on_delivery=self._on_delivery_error,
                                       **{"delivery.report.only.error": True, "client.id": self.stamp.worker})
        self.deadletters = DeadLetterSink(self.producer, topics.name("deadletter"), self.stage)
        consumer_config = {"session.timeout.ms": settings.session_timeout_ms, "client.id": self.stamp.worker,
                           "partition.assignment.strategy": "cooperative-sticky"}
        if settings.instance_id:
            consumer_config["group.instance.id"] = settings.instance_id
        self.consumer = kafka.consumer(self.group, bootstrap, **consumer_config)
        self.metrics = WorkerMetrics.for_model(model.name, model.version)
        self.stats = WorkerStats()
        self.stopping = False
        self.failed: list[str] = []
        self.pending: dict[tuple[str, int], int] = {}    # acknowledged but not yet committed: next offsets

    def stop(self, *_args) -> None:
        """Finish the current batch, commit, leave the group (signal handler: only sets a flag)."""
        self.stopping = True

    def run(self) -> WorkerStats:
        self.consumer.subscribe([self.features_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("%s: worker %s (%s) consuming %s as group %s, writing %s", self.stage, self.stamp.worker,
                 self.stamp.role, self.features_topic, self.group, self.scores_topic)
        next_lag = next_status = time.monotonic()
        try:
            while not self.stopping:
                messages = self.consumer.consume(self.settings.batch_size, self.settings.batch_ms / 1000)
                if messages:
                    self.process(messages)
                now = time.monotonic()
                if now >= next_lag:
                    self._update_lag()
                    next_lag = now + 1.0
                if now >= next_status:
                    self._log_status()
                    next_status = now + self.settings.status_interval_s
        finally:
            self._close()
        return self.stats

    def process(self, messages: list) -> None:
        """Score one batch, wait for the broker to acknowledge every output, then commit its offsets."""
        started, received_at = time.perf_counter(), now_ms()
        records = [KafkaRecord.from_message(m) for m in messages if not self._is_error(m)]
        if not records:
            return
        t0 = time.perf_counter()
        result = score_batch(self.model, records, self.stamp, received_at)
        self.metrics.predict.observe(time.perf_counter() - t0)
        for _, score in result.scored:
            kafka.produce(self.producer, self.scores_topic, score.to_record())
        for record, reason in result.rejected:
            self.deadletters.send(record, reason)
        self._flush()
        acked = now_ms()
        for record, _ in result.scored:
            if record.timestamp:
                self.metrics.latency.observe(max(0.0, acked - record.timestamp) / 1000)
        for r in records:
            key = (r.topic, r.partition)
            self.pending[key] = max(self.pending.get(key, 0), r.offset + 1)
        self._commit()
        self._count(len(records), len(result.scored), len(result.rejected), result.model_errors)
        self.metrics.batch.observe(time.perf_counter() - started)

    def _count(self, n_in: int, n_out: int, n_dead: int, model_errors: int) -> None:
        s, m = self.stats, self.metrics
        s.batches += 1
        s.records_in += n_in
        s.scored += n_out
        s.dead_lettered += n_dead
        m.batch_size.observe(n_in)
        m.records_in.inc(n_in)
        m.records_out.inc(n_out)
        if n_dead:
            m.dead.inc(n_dead)
        if model_errors:
            m.error("model", model_errors)

    def _is_error(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.fatal():
            raise KafkaException(err)
        log.warning("%s: consumer error: %s", self.stage, err)
        self.metrics.error("consume")
        return True

    def _on_delivery_error(self, err, msg) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err}")

    def _flush(self) -> None:
        # Every in-flight record is either acknowledged or reported failed within
        # message.timeout.ms: no third outcome, so waiting here cannot hang forever.
        while self.producer.flush(1.0) > 0:
            pass
        if self.failed:
            self.metrics.error("delivery", len(self.failed))
            raise DeliveryFailed(f"{self.stage}: {len(self.failed)} outputs not acknowledged (first: "
                                 f"{self.failed[0]}); offsets not committed, a restart rescores the batch")

    def _commit(self, only: set[tuple[str, int]] | None = None) -> None:
        todo = {k: v for k, v in self.pending.items() if only is None or k in only}
        if not todo:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in todo.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            # Kept pending and retried with the next batch; if the partition moves
            # meanwhile, its new owner rescores from the last commit: doubles, no loss.
            log.warning("%s: commit failed, will retry: %s", self.stage, exc)
            self.metrics.error("commit")
            return
        for k, v in todo.items():
            if self.pending.get(k) == v:
                del self.pending[k]

    def _on_assign(self, _consumer, partitions) -> None:
        log.info("%s: assigned %s", self.stage, _names(partitions))

    def _on_revoke(self, _consumer, partitions) -> None:
        self._commit({(tp.topic, tp.partition) for tp in partitions})
        self._forget(partitions)
        log.info("%s: revoked %s", self.stage, _names(partitions))

    def _on_lost(self, _consumer, partitions) -> None:
        self._forget(partitions)
        log.warning("%s: lost %s (their new owner rescores from the last commit)", self.stage, _names(partitions))

    def _forget(self, partitions) -> None:
        for tp in partitions:
            self.pending.pop((tp.topic, tp.partition), None)

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
        if not self.failed:
            self._flush()
            self._commit()
        self.consumer.close()           # leaves the group: the other replicas take the partitions now
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
