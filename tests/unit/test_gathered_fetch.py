"""Readers on the answer's path let the broker gather records: the same wait in librdkafka's and Java's keys."""

from scorestream.kafka import gathered_fetch


def test_wait_in_both_clients_keys(monkeypatch):
    monkeypatch.setenv("SCORESTREAM_FETCH_WAIT_MS", "7")
    assert gathered_fetch() == {"fetch.wait.max.ms": 7, "fetch.min.bytes": 65536}
    assert gathered_fetch(java=True) == {"fetch.max.wait.ms": 7, "fetch.min.bytes": 65536}


def test_zero_wakes_readers_on_every_record(monkeypatch):
    monkeypatch.setenv("SCORESTREAM_FETCH_WAIT_MS", "0")
    assert gathered_fetch() == {} == gathered_fetch(java=True)


def test_a_part_with_its_own_wait(monkeypatch):
    monkeypatch.setenv("SCORESTREAM_FETCH_WAIT_MS", "7")
    assert gathered_fetch(wait_ms=250, min_bytes=1 << 20) == {"fetch.wait.max.ms": 250, "fetch.min.bytes": 1 << 20}
    assert gathered_fetch(wait_ms=0) == {}


def test_workers_gather_longer_than_the_shared_wait(monkeypatch):
    """The workers are four of the answer path's readers and a fetch plus a produce request per batch each: they
    gather for 10 ms (docs/benchmarks.md), whatever SCORESTREAM_FETCH_WAIT_MS says; SCORESTREAM_WORKER_FETCH_WAIT_MS
    and --fetch-wait-ms set it."""
    from click.testing import CliRunner

    from models.cli import worker
    from models.worker import WorkerSettings

    monkeypatch.setenv("SCORESTREAM_FETCH_WAIT_MS", "5")
    assert WorkerSettings(model="m@1").fetch_wait_ms == 10
    monkeypatch.setenv("SCORESTREAM_WORKER_FETCH_WAIT_MS", "0")
    assert WorkerSettings(model="m@1").fetch_wait_ms == 0
    assert "--fetch-wait-ms" in CliRunner().invoke(worker, ["--help"]).output
