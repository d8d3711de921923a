"""The decoy on the real broker: SIGKILLed mid-stream and restarted, every request archived exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter

from confluent_kafka import KafkaError, Producer, TopicPartition

from decoy.record import ArchivedRequest
from scorestream import kafka
from scorestream.contract import KafkaRecord
from scorestream.publish import synthetic_requests
from scorestream.ports import free_port
from scorestream.process import _fields

MALFORMED = [(b"bad-1", b"not json"), (b"bad-2", None), (None, b'{"request_id": 1}'), (b"bad-4", b"\xff\xfe")]


def _publish(bootstrap: str, topic: str, count: int, rate: float, sent: list[KafkaRecord]) -> None:
    """count requests (some with headers, some malformed) at rate/s; sent gets each as the broker stored it."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})

    def delivered(err, msg, headers):
        assert err is None, err     # a delivery report carries no headers: keep those we sent
        r = KafkaRecord.from_message(msg)
        sent.append(KafkaRecord(r.key, r.value, tuple(headers or ()), r.topic, r.partition, r.offset, r.timestamp))

    start = time.perf_counter()
    for i, request in enumerate(synthetic_requests(seed=3, count=count)):
        record = request.to_record()
        key, value, headers = record.key, record.value, None
        if i % 7 == 0:
            headers = [("trace", f"t-{i}".encode()), ("empty", None), ("trace", b"dup-name")]
        if i % 500 == 250:
            key, value = MALFORMED[(i // 500) % len(MALFORMED)]
        p.produce(topic, value, key, headers=headers, on_delivery=lambda e, m, h=headers: delivered(e, m, h))
        p.poll(0)
        ahead = start + (i + 1) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    assert p.flush(30) == 0


def read_committed(bootstrap: str, topic: str) -> list[KafkaRecord]:
    """Every record of topic a read_committed reader sees, up to the last stable offset."""
    c = kafka.consumer(f"test-{uuid.uuid4().hex[:8]}", bootstrap, **{"enable.partition.eof": True})
    parts = kafka.partitions(c, topic)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    todo, out = set(parts), []
    deadline = time.monotonic() + 30
    while todo and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(m.partition())
                continue
            out.append(KafkaRecord.from_message(m))
    c.close()
    assert not todo, f"partitions {todo} not read to the end"
    return out


def _start_decoy(cli_env, log, *extra):
    return subprocess.Popen([sys.executable, "-m", "scorestream.cli", "decoy", "--batch-size", "200",
                             "--batch-ms", "20", *extra], env=cli_env, stdout=log, stderr=subprocess.STDOUT)


def test_sigkill_and_restart_archive_each_request_exactly_once(broker, registry, cli_env, tmp_path):
    source, archive = registry.name("requests"), registry.name("archive")
    count, sent = 6000, []
    publisher = threading.Thread(target=_publish, args=(broker.bootstrap, source, count, 2500, sent))
    publisher.start()
    with open(tmp_path / "decoy.log", "ab") as log:
        for kill_after in (1.5, 1.0):       # killed twice while requests keep arriving
            decoy = _start_decoy(cli_env, log)
            time.sleep(kill_after + 1.0)    # ~1 s to start, then archiving
            assert decoy.poll() is None, (tmp_path / "decoy.log").read_text()
            decoy.send_signal(signal.SIGKILL)
            decoy.wait(10)
        publisher.join(30)
        decoy = _start_decoy(cli_env, log, "--idle-exit", "3")
        assert decoy.wait(60) == 0, (tmp_path / "decoy.log").read_text()
    logged = (tmp_path / "decoy.log").read_text()
    assert len(sent) == count

    archived = [ArchivedRequest.from_record(r) for r in read_committed(broker.bootstrap, archive)]
    by_position = {}
    for a in archived:
        position = (a.original.partition, a.original.offset)
        assert position not in by_position, f"duplicate {position}"
        by_position[position] = a
    missing = [r for r in sent if (r.partition, r.offset) not in by_position]
    assert (len(missing), len(archived) - count) == (0, 0), logged
    for r in sent:      # byte for byte, headers included, at the request's own timestamp
        a = by_position[(r.partition, r.offset)]
        assert a.original == KafkaRecord(r.key, r.value, r.headers, source, r.partition, r.offset, r.timestamp)
    assert "archived" in logged.splitlines()[-1]


def test_archive_record_carries_the_request_timestamp(broker, registry, cli_env, tmp_path):
    source, archive = registry.name("requests"), registry.name("archive")
    OLD = int(time.time() * 1000) - 3 * 86_400_000     # seen 3 days ago (within the 7 days of retention)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(source, b'{"request_id": "old"}', b"old", timestamp=OLD, partition=1)
    p.flush(10)
    port = free_port(2)
    decoy = subprocess.Popen([sys.executable, "-m", "scorestream.cli", "decoy", "--idle-exit", "2", "--metrics-port",
                              str(port)], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = ""
    while decoy.poll() is None and 'archived_records_total{stage="decoy"} 1.0' not in metrics:
        time.sleep(0.2)
        try:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            pass
    stdout, stderr = decoy.communicate(timeout=60)
    assert decoy.returncode == 0, stderr
    assert "archived 1 records" in stdout
    for name in ("scorestream_consumer_lag_records", "scorestream_transaction_aborts_total",
                 "scorestream_transaction_commit_seconds_bucket"):
        assert any(line.startswith(name + "{") and 'stage="decoy"' in line for line in metrics.splitlines()), name
    [record] = read_committed(broker.bootstrap, archive)
    assert (record.timestamp, record.partition) == (OLD, 1)
    assert ArchivedRequest.from_record(record).archived_at > OLD + 3 * 86_400_000 - 60_000


def test_a_consumer_stuck_out_of_its_group_is_replaced_and_the_archive_stays_exactly_once(broker, registry):
    """librdkafka can fail to rejoin after a broker restart (kafka.GroupMembership); that state is not reproducible
    at will, so the watch's verdict is given here: the consumer is marked out of its group long ago, mid-stream.
    The replacement is real: the old consumer closes, a new one joins and resumes from the committed offsets."""
    from decoy.archiver import Archiver
    from decoy.settings import DecoySettings

    source, archive = registry.name("requests"), registry.name("archive")
    count, sent = 3000, []
    publisher = threading.Thread(target=_publish, args=(broker.bootstrap, source, count, 1000, sent))
    archiver = Archiver(DecoySettings(instance=f"stuck-{uuid.uuid4().hex[:6]}", batch_size=200, batch_ms=20,
                                      idle_exit_s=3.0), registry, broker.bootstrap)

    def mark_stuck_mid_stream() -> None:
        while archiver.stats.archived < 500:
            time.sleep(0.05)
        archiver.membership.left(at=time.monotonic() - 3600)

    marker = threading.Thread(target=mark_stuck_mid_stream, daemon=True)
    publisher.start()
    marker.start()
    stats = archiver.run()
    publisher.join(30)
    assert archiver.consumer_replacements == 1
    assert archiver.consumer_rebuilds.total == 0

    archived = [ArchivedRequest.from_record(r) for r in read_committed(broker.bootstrap, archive)]
    positions = Counter((a.original.partition, a.original.offset) for a in archived)
    assert len(sent) == count and stats.archived == count
    assert {(r.partition, r.offset) for r in sent} == set(positions) and set(positions.values()) == {1}


def test_a_consumer_that_cannot_read_its_committed_offsets_is_replaced_and_the_archive_stays_exactly_once(
        broker, registry):
    """After a broker restart librdkafka can lose a consumer's group coordinator for good, and a rewind (after an
    aborted or hung transaction) then cannot read the committed offsets: once that killed the decoy. Here the
    broker is frozen (SIGSTOP) for the committed-offsets call of a rewind at the fourth batch: the consumer is
    replaced, and the new one resumes from the committed offsets."""
    from decoy.archiver import Archiver
    from decoy.settings import DecoySettings

    source, archive = registry.name("requests"), registry.name("archive")
    count, sent = 2000, []
    _publish(broker.bootstrap, source, count, 2000, sent)
    archiver = Archiver(DecoySettings(instance=f"rewind-{uuid.uuid4().hex[:6]}", batch_size=200, batch_ms=20,
                                      idle_exit_s=3.0, call_timeout_s=2.0), registry, broker.bootstrap)
    archive_batch, batches = archiver._archive, []

    def rewind_with_the_broker_frozen(msgs: list) -> None:
        """As _archive after an abort: nothing archived, then a rewind; the broker answers nothing meanwhile."""
        batches.append(len(msgs))
        if len(batches) != 4:
            return archive_batch(msgs)
        pid = broker.process.pid()
        os.kill(pid, signal.SIGSTOP)
        _wait_until_stopped(pid)    # on a busy host a thread of the JVM can still answer for a while
        thaw = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))    # after the call's 2 s timeout
        thaw.start()
        try:
            archiver._rewind()
        finally:
            thaw.join()

    archiver._archive = rewind_with_the_broker_frozen
    try:
        stats = archiver.run()
    finally:
        os.kill(broker.process.pid(), signal.SIGCONT)
    assert len(batches) > 4 and archiver.consumer_replacements == 1

    archived = [ArchivedRequest.from_record(r) for r in read_committed(broker.bootstrap, archive)]
    positions = Counter((a.original.partition, a.original.offset) for a in archived)
    assert len(sent) == count and stats.archived == count
    assert {(r.partition, r.offset) for r in sent} == set(positions) and set(positions.values()) == {1}


def _wait_until_stopped(pid: int, timeout_s: float = 5.0) -> None:
    """Until every thread of pid is stopped: SIGSTOP stops a process's threads one by one."""
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        states = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                states.add(_fields(pid, tid)[0])
            except FileNotFoundError:      # a thread that ended meanwhile
                continue
        if states <= {"T", "t"}:
            return
        time.sleep(0.001)
    raise AssertionError(f"the broker ({pid}) did not stop within {timeout_s}s")
