"""The archiver: scoring.requests -> scoring.archive, each request exactly once.

Consume-transform-produce in Kafka transactions: the copies of a batch and the
consumer offsets after it commit together, so a decoy killed at any moment
leaves, for read_committed readers, either the whole batch archived and its
offsets committed, or neither. A restart with the same instance id fences the
dead one's open transaction (transactional.id) and takes over its partitions
at once (static group membership, group.instance.id).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from decoy.record import ArchivedRequest
from decoy.settings import STAGE, DecoySettings
from scorestream import kafka
from scorestream.contract import KafkaRecord
from scorestream.metrics import LATENCY_BUCKETS, serve
from scorestream.settings import KafkaSettings
from scorestream.topics import TopicRegistry

log = logging.getLogger(__name__)

ARCHIVED = Counter("scorestream_archived_records_total", "Requests copied into the archive (committed)", ["stage"])
ABORTS = Counter("scorestream_transaction_aborts_total", "Transactions aborted and replayed from the last commit",
                 ["stage"])
LAG = Gauge("scorestream_consumer_lag_records", "Records behind the end of the input topic", ["stage"])
COMMIT = Histogram("scorestream_transaction_commit_seconds", "Time to commit one transaction", ["stage"],
                   buckets=LATENCY_BUCKETS)


REPORT_EVERY_S = 30.0              # a line of progress in the log, as the workers write
HANG_MARGIN_S = 15.0                # past its own timeout, a producer call is taken for hung
CALL_ATTEMPTS = 3                   # of a transactional call failing with a retriable error, before a new producer


class CallHung(Exception):
    """A producer call did not return long after its own timeout (librdkafka lost track of it), or kept timing out
    after the broker was back."""


class ConsumerFenced(Exception):
    """The consumer met a fatal error (librdkafka: it cannot be used any more)."""


def bounded(call, *args, margin_s: float = HANG_MARGIN_S):
    """call(*args), whose last argument is its own timeout in seconds; CallHung if it has not returned margin_s
    after that timeout.

    librdkafka can miss its own timeout for good: 2.16's send_offsets_to_transaction waited forever on a
    decommissioned group coordinator (librdkafka issue #5511). The call runs in a daemon thread, which a hang
    leaves behind."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call(*args)
        except BaseException as exc:        # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"decoy-{getattr(call, '__name__', 'call')}", daemon=True)
    thread.start()
    thread.join(args[-1] + margin_s)
    if thread.is_alive():
        raise CallHung(f"{getattr(call, '__name__', call)} did not return within {args[-1] + margin_s:.0f}s "
                       f"(its timeout {args[-1]:.0f}s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@dataclass
class ArchiverStats:
    archived: int = 0
    transactions: int = 0
    aborts: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.archived / self.seconds if self.seconds else 0.0


class Archiver:
    def __init__(self, settings: DecoySettings, registry: TopicRegistry, bootstrap: str | None = None):
        self.settings = settings
        self.source, self.archive = registry.name("requests"), registry.name("archive")
        # The topic prefix namespaces the group and transactional id too: sandboxes never meet.
        prefix = KafkaSettings().topic_prefix
        self._consumer_config = (prefix + settings.group, bootstrap, {
            "group.instance.id": prefix + settings.transactional_id,
            # longer than a broker outage we ride through: at 10 s, a 14 s restart of the broker expired the
            # session client-side and the rejoin was fenced as a second member with our instance id (fatal);
            # a restarted decoy rejoins at once anyway (static membership)
            "session.timeout.ms": 45000,
            # the archive is not on the answer's path: fetch in bulk, sparing the broker a wake-up per request
            "fetch.min.bytes": 65536,
            "fetch.wait.max.ms": settings.batch_ms,
        })
        self.consumer = self._new_consumer()
        self._producer_config = (bootstrap, {
            "transactional.id": prefix + settings.transactional_id,
            "transaction.timeout.ms": int(settings.transaction_timeout_s * 1000),
            "linger.ms": 5,
        })
        self.producer = self._new_producer()
        self.stats = ArchiverStats()
        self.consumer_rebuilds = kafka.Recoveries()     # too many lately: something else is wrong, stop
        self.consumer_replacements = 0      # of a consumer stuck out of its group or without its committed
                                            # offsets: not an error, not capped
        self.producer_rebuilds = kafka.Recoveries()
        self._hung: list = []       # producers abandoned in a call that never returned: never destroyed
        self.stopping = False
        self._rebalances = 0
        self._assigned_at: float | None = None
        self._metrics = (ARCHIVED.labels(stage=STAGE), ABORTS.labels(stage=STAGE), LAG.labels(stage=STAGE),
                         COMMIT.labels(stage=STAGE))

    def run(self) -> ArchiverStats:
        """Archive until SIGTERM/SIGINT (the open transaction is finished first) or idle_exit_s of nothing."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        serve(self.settings.metrics_port)
        timeout = self.settings.transaction_timeout_s
        bounded(self.producer.init_transactions, timeout)     # fences a dead predecessor's open transaction
        self.archive_partitions = len(kafka.partitions(self.consumer, self.archive))
        self._subscribe()
        log.info("%s %s: %s -> %s", STAGE, self.settings.instance, self.source, self.archive)
        first_work = last_work = last_lag = None
        started = last_report = time.monotonic()
        try:
            while not self.stopping:
                try:
                    batch = self._next_batch()
                except ConsumerFenced as exc:
                    self._rebuild_consumer(exc)
                    continue
                if self.membership.stuck():
                    self._replace_consumer(f"out of its group for {self.membership.out_for():.0f}s")
                    continue
                now = time.monotonic()
                if batch:
                    self._archive(batch)
                    first_work, last_work = first_work or now, time.monotonic()
                elif self._idle_for_too_long(now, last_work):
                    break
                if last_lag is None or now - last_lag > 1.0:
                    self._update_lag()
                    last_lag = now
                if now - last_report > REPORT_EVERY_S:
                    log.info("%s: %d archived in %d transactions, %d aborted, %d consumer and %d producer rebuilds, "
                             "%d consumers replaced", STAGE, self.stats.archived, self.stats.transactions,
                             self.stats.aborts, self.consumer_rebuilds.total, self.producer_rebuilds.total,
                             self.consumer_replacements)
                    last_report = now
        finally:
            end = last_work if self.settings.idle_exit_s and last_work else time.monotonic()
            self.stats.seconds = end - (first_work or started)
            self.consumer.close()
            self.producer.flush(10)
        return self.stats

    def _new_producer(self):
        bootstrap, config = self._producer_config
        return kafka.producer(bootstrap, **config)

    def _new_consumer(self):
        group, bootstrap, config = self._consumer_config
        return kafka.consumer(group, bootstrap, **config)

    def _subscribe(self) -> None:
        self.membership = kafka.GroupMembership(self.settings.rejoin_limit_s)
        self.consumer.subscribe([self.source], on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)

    def _rebuild_consumer(self, exc: "ConsumerFenced") -> None:
        """The consumer met a fatal error between transactions (after a long broker outage: its rejoin fenced as a
        second member with our own static instance id). A new consumer starts at the committed offsets, which are
        the archive's own (they commit in its transactions): nothing lost, nothing doubled. A second decoy with our
        transactional id would fence our producer at its next commit, and that stops this one."""
        if self.consumer_rebuilds.add():
            raise exc
        log.warning("%s: consumer failed (%s); a new one resumes from the committed offsets", STAGE, exc)
        self._new_consumer_for_old()

    def _replace_consumer(self, why: str) -> None:
        """The consumer has been out of its group for rejoin_limit_s, or cannot read its committed offsets
        (kafka.GroupMembership: librdkafka can fail to rejoin after the coordinator's broker restarts). Its
        replacement resumes from the committed offsets, as after a fatal error; while the broker stays away this
        repeats every rejoin_limit_s, harmlessly."""
        self.consumer_replacements += 1
        log.warning("%s: consumer %s; a new one resumes from the committed offsets", STAGE, why)
        self._new_consumer_for_old()

    def _new_consumer_for_old(self) -> None:
        if not kafka.close_within(self.consumer):
            log.warning("%s: the old consumer did not close within 10s; left behind", STAGE)
        self._rebalances += 1
        self._assigned_at = None
        self.consumer = self._new_consumer()
        self._subscribe()

    def _idle_for_too_long(self, now: float, last_work: float | None) -> bool:
        """Nothing archived for idle_exit_s since the last batch or since partitions were assigned."""
        if not self.settings.idle_exit_s or not self._assigned_at:
            return False
        return now - max(last_work or 0.0, self._assigned_at) > self.settings.idle_exit_s

    def _stop(self, *_):
        self.stopping = True

    def _assigned(self, consumer, partitions):
        self._rebalances += 1
        self._assigned_at = time.monotonic()
        self.membership.joined()

    def _revoked(self, consumer, partitions):
        self._rebalances += 1
        self._assigned_at = None
        self.membership.left()

    def _next_batch(self) -> list:
        """Up to batch_size records within batch_ms, none of them read across a rebalance."""
        generation = self._rebalances
        try:
            msgs = self.consumer.consume(self.settings.batch_size, self.settings.batch_ms / 1000)
        except KafkaException as exc:
            if kafka.is_fatal(exc.args[0]):
                raise ConsumerFenced(exc.args[0].str()) from exc
            raise
        if self._rebalances != generation and msgs:
            # Some of these may come from partitions we no longer own, or precede a re-fetch of the
            # same offsets: drop them all and read again from the committed offsets.
            self._rewind()
            return []
        records = []
        for m in msgs:
            if m.error() and kafka.is_fatal(m.error()):
                raise ConsumerFenced(m.error().str())
            if m.error():
                log.warning("%s: consume error %s", STAGE, m.error())
            else:
                records.append(m)
        return records

    def _archive(self, msgs: list) -> None:
        """One transaction: the copies plus the offsets after them. Aborted and re-read on abortable errors; a
        call that never returns (a librdkafka hang) costs the producer: a new one fences it and we re-read."""
        archived, aborts, _, commit_time = self._metrics
        timeout = self.settings.call_timeout_s
        archived_at = int(time.time() * 1000)
        ends: dict[int, int] = {}
        try:
            self.producer.begin_transaction()
            for m in msgs:
                self._produce(m, archived_at)
                ends[m.partition()] = m.offset() + 1
            offsets = [TopicPartition(self.source, p, o) for p, o in ends.items()]
            started = time.perf_counter()
            self._retrying(self.producer.send_offsets_to_transaction, offsets,
                           self.consumer.consumer_group_metadata(), timeout)
            self._retrying(self.producer.commit_transaction, timeout)
            commit_time.observe(time.perf_counter() - started)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise                       # fatal (e.g. fenced by a newer decoy with our id): stop
            log.warning("%s: aborting transaction of %d records: %s", STAGE, len(msgs), error)
            try:
                self._retrying(self.producer.abort_transaction, timeout)
            except CallHung as hung:
                self._rebuild_producer(hung)
        except CallHung as hung:
            self._rebuild_producer(hung)
        else:
            archived.inc(len(msgs))
            self.stats.archived += len(msgs)
            self.stats.transactions += 1
            return
        self._rewind()
        aborts.inc()
        self.stats.aborts += 1

    def _produce(self, m, archived_at: int) -> None:
        record = ArchivedRequest(KafkaRecord.from_message(m), archived_at)
        ts = m.timestamp()[1]
        while True:
            try:
                # Same partition number as the source (modulo): per-partition order is kept, and the
                # archive's timestamp is the request's, for offsets_for_times in replay.
                self.producer.produce(self.archive, m.value(), m.key(), partition=m.partition() % self.archive_partitions,
                                      timestamp=ts if ts > 0 else 0, headers=record.headers())
                return
            except BufferError:
                self.producer.poll(0.05)

    def _retrying(self, call, *args, attempts: int = CALL_ATTEMPTS) -> None:
        """A transactional call, again after a retriable error (a timeout: the transaction is kept); CallHung when
        it still fails: once, after a 30 s outage, AddOffsetsToTxn timed out again and again with the broker back."""
        for attempt in range(attempts):
            try:
                return bounded(call, *args)
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                if attempt == attempts - 1:
                    raise CallHung(f"{call.__name__} failed {attempts} times: {exc.args[0]}") from exc
                log.warning("%s: %s failed (%s): again", STAGE, call.__name__, exc.args[0])
                time.sleep(0.2 * (attempt + 1))

    def _rebuild_producer(self, hung: "CallHung") -> None:
        """A new producer with our transactional.id: its init_transactions fences the hung one (a write or commit
        of it can no longer land) and aborts the open transaction; the caller re-reads from the committed
        offsets."""
        if self.producer_rebuilds.add():
            raise hung
        log.error("%s: %s; a new producer fences it, and the batch is read again", STAGE, hung)
        self._hung.append(self.producer)
        self.producer = self._new_producer()
        # the broker may still be down: wait for it as long as a decoy would wait at its start and longer
        self._retrying(self.producer.init_transactions, self.settings.call_timeout_s, attempts=15)

    def _rewind(self) -> None:
        """Seek every owned partition back to its committed offset: the next batch starts there. A consumer that
        cannot fetch its committed offsets (its group coordinator lost after a broker restart, as
        kafka.GroupMembership describes) is replaced instead: a new one starts at them."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        try:
            committed = self.consumer.committed(assignment, timeout=self.settings.call_timeout_s)
        except KafkaException as exc:
            self._replace_consumer(f"cannot read its committed offsets ({exc.args[0]})")
            return
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:    # not fetching yet: the fetch starts at the committed offset anyway
                log.debug("%s: seek %s: %s", STAGE, tp, exc)

    def _update_lag(self) -> None:
        assignment = self.consumer.assignment()
        if not assignment:
            return
        lag = 0
        for tp in self.consumer.position(assignment):
            high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high and high[1] >= 0 and tp.offset >= 0:
                lag += max(0, high[1] - tp.offset)
        self._metrics[2].set(lag)
