"""Replay on the real broker: exact time-range boundaries, live-code scores, Parquet, sandbox topic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from decoy.archiver import Archiver
from decoy.replay import replay
from decoy.settings import DecoySettings
from decoy.timerange import TimeRange
from extractors import get_extractor
from models.registry import load_model
from scorestream.contract import Features, Request, Result, Score
from scorestream.errors import UserError
from scorestream.publish import synthetic_requests
from scorestream.synthetic import TransactionGenerator
from tests.integration.test_decoy import read_committed

MODEL = "fraud_xgb@3"
MINUTE = 60_000
LATE = 3 * MINUTE     # the fixture writes its boundary and malformed requests after those 2 minutes past T1


@pytest.fixture
def archived(broker, registry):
    """Requests around a range [T0, T1) archived by the decoy; returns (T0, T1, {request_id: Request})."""
    t0 = int(time.time() * 1000) - 30 * MINUTE
    t1 = t0 + 10 * MINUTE
    requests = list(synthetic_requests(seed=9, count=1200))
    # timestamps from 2 minutes before T0 to 2 minutes after T1, in order, spread over the partitions
    stamps = np.linspace(t0 - 2 * MINUTE, t1 + 2 * MINUTE, len(requests)).astype(np.int64).tolist()
    stamps[:4] = [t0 - 1, t0, t0 + 1, t1 - 1]           # exactly on and beside the bounds
    stamps[4:6] = [t1, t1 + 1]
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    source, sent = registry.name("requests"), {}
    for i, (request, ts) in enumerate(sorted(zip(requests[6:], stamps[6:]), key=lambda x: x[1])):
        sent[request.request_id] = _send(p, source, Request(request.request_id, ts, request.payload), ts, i % 4)
    for i, (request, ts) in enumerate(zip(requests[:6], stamps[:6])):   # written late, out of time order
        sent[request.request_id] = _send(p, source, Request(request.request_id, ts, request.payload), ts, i % 4)
    p.produce(source, b"not json", b"bad-in-range", timestamp=t0 + 5, partition=0)
    p.produce(source, b'{"request_id": "x", "ts": 1, "payload": {"amount": "lots"}}', b"x", timestamp=t0 + 6,
              partition=1)
    p.produce(source, b"not json", b"bad-out-of-range", timestamp=t1 + 5, partition=0)
    assert p.flush(30) == 0
    stats = Archiver(DecoySettings(idle_exit_s=1.0, batch_ms=20), registry, broker.bootstrap).run()
    assert stats.archived == len(requests) + 3
    return t0, t1, sent


def _send(p, topic, request: Request, ts: int, partition: int) -> Request:
    record = request.to_record()
    p.produce(topic, record.value, record.key, timestamp=ts, partition=partition)
    return request


def test_range_boundaries_and_scores_equal_the_model_on_the_same_rows(broker, registry, archived, tmp_path):
    t0, t1, sent = archived
    expected = {rid for rid, r in sent.items() if t0 <= r.ts < t1}
    assert len(expected) > 800
    out = tmp_path / "replay.parquet"
    # The boundary requests were written after everything else, behind requests seen 2 minutes past T1:
    # late_ms must reach that far for them to be found.
    summary = replay(TimeRange(t0, t1), (MODEL,), out, late_ms=LATE, registry=registry,
                     bootstrap=broker.bootstrap)

    table = pq.read_table(out).to_pydict()
    assert sorted(table["request_id"]) == sorted(expected)           # each once, nothing outside [T0, T1)
    assert summary.read == len(expected) + 2 and summary.scored == len(expected)
    assert summary.skipped == 2 and len(summary.malformed) == 2      # not JSON; amount not a number
    assert set(table["extractor"]) == {"txn@1"}
    assert [ts.timestamp() * 1000 for ts in table["ts"]] == table["request_ts"]
    # the same extractor and model code, called directly, gives the same scores
    model = load_model(MODEL)
    X = get_extractor(model.extractor).extract_many([sent[rid].payload for rid in table["request_id"]])
    np.testing.assert_array_equal(np.asarray(table[MODEL]), model.predict(X))


def test_scores_equal_the_live_worker_for_the_same_model_version(broker, registry, archived, cli_env, tmp_path):
    """The live path from features on: `scorestream worker` scores the range's requests from scoring.features.

    The extract job (Flink) is not built yet, so this test writes the features as
    it will: the same extractor's output in a Features message.
    """
    t0, t1, sent = archived
    inside = [r for r in sent.values() if t0 <= r.ts < t1]
    extractor = get_extractor(load_model(MODEL).extractor)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for r in inside:
        rec = Features(r.request_id, r.ts, extractor.ref, tuple(extractor.extract(r.payload).tolist())).to_record()
        p.produce(registry.name("features"), rec.value, rec.key)
    assert p.flush(10) == 0
    worker = subprocess.Popen([sys.executable, "-m", "scorestream.cli", "worker", "--model", MODEL], env=cli_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        live: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(live) < len(inside) and time.monotonic() < deadline:
            time.sleep(0.5)
            live = {r.key.decode(): Score.from_record(r).score for r in read_committed(broker.bootstrap,
                                                                                         registry.name("scores"))}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    out = tmp_path / "replay.parquet"
    replay(TimeRange(t0, t1), (MODEL,), out, late_ms=LATE, registry=registry, bootstrap=broker.bootstrap)
    replayed = pq.read_table(out).to_pydict()
    assert len(live) == len(replayed["request_id"]) == len(inside)
    assert [live[rid] for rid in replayed["request_id"]] == replayed[MODEL]     # equal, not merely close


def test_stragglers_beyond_late_ms_are_not_found(broker, registry, archived):
    t0, t1, sent = archived
    summary = replay(TimeRange(t0, t1), late_ms=MINUTE, registry=registry, bootstrap=broker.bootstrap)
    expected = sum(1 for r in sent.values() if t0 <= r.ts < t1)
    assert summary.scored == expected - 3       # those seen at T0, T0 + 1 and T1 - 1, archived 2 minutes late


def test_agreement_with_what_was_served(broker, registry, archived):
    t0, t1, sent = archived
    inside = [r for r in sent.values() if t0 <= r.ts < t1][:20]
    model = load_model(MODEL)
    live = model.predict(get_extractor(model.extractor).extract_many([r.payload for r in inside]))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i, (r, score) in enumerate(zip(inside, live.tolist())):
        # answers of the rendezvous: 19 served by the model with its score, one off by 0.1
        served = Result(r.request_id, score + (0.1 if i == 0 else 0.0), "fraud_xgb", 3, "preferred", 5.0, {}, None, 1)
        rec = served.to_record()
        p.produce(registry.name("results"), rec.value, rec.key, timestamp=r.ts + 40)
    assert p.flush(10) == 0
    summary = replay(TimeRange(t0, t1), (MODEL,), late_ms=LATE, registry=registry, bootstrap=broker.bootstrap)
    agreement = summary.served[MODEL]
    assert (agreement.compared, agreement.agreed) == (20, 19)
    assert agreement.max_delta == pytest.approx(0.1)


def test_republish_into_a_sandbox_topic(broker, registry, archived):
    t0, t1, sent = archived
    sandbox = registry.name("requests") + ".sandbox"
    summary = replay(TimeRange(t0, t1), to_topic=sandbox, late_ms=LATE, registry=registry, bootstrap=broker.bootstrap)
    copied = read_committed(broker.bootstrap, sandbox)
    assert summary.republished == len(copied) == summary.read
    keys = sorted(r.key for r in copied)
    assert keys == sorted([rid.encode() for rid, r in sent.items() if t0 <= r.ts < t1] + [b"bad-in-range", b"x"])
    with pytest.raises(UserError, match="live topic"):
        replay(TimeRange(t0, t1), to_topic=registry.name("requests"), registry=registry, bootstrap=broker.bootstrap)


def test_cli_empty_range_unknown_model_and_parquet(cli_env, archived, tmp_path):
    t0, t1, _ = archived
    out = tmp_path / "r.parquet"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scorestream.cli", "replay", *args], env=cli_env | {"COLUMNS": "300"},
                              capture_output=True, text=True, timeout=60)

    empty = run("--from", str(t1 + 60 * MINUTE), "--to", str(t1 + 61 * MINUTE), "--model", MODEL, "--out", str(out))
    assert empty.returncode == 0 and "no archived requests" in empty.stdout and not out.exists()
    unknown = run("--from", str(t0), "--to", str(t1), "--model", "fraud_xgb@99", "--out", str(out))
    assert unknown.returncode == 1 and "fraud_xgb@99" in unknown.stderr and not out.exists()
    done = run("--from", str(t0), "--to", str(t1), "--late-ms", str(LATE), "--model", MODEL, "--model", "fraud_lr@1",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 malformed skipped" in done.stdout and "fraud_lr@1" in done.stdout
    assert pq.read_table(out).column_names[-2:] == [MODEL, "fraud_lr@1"]


def test_with_outcomes_grades_every_model_beside_the_answers_served(broker, registry, archived, tmp_path):
    """The label column and AUC / log loss / Brier per model; the served answers graded the same way."""
    from decoy.replay import grades
    from scorestream.contract import Outcome
    t0, t1, sent = archived
    in_range = sorted(rid for rid, r in sent.items() if t0 <= r.ts < t1)
    labelled = in_range[: len(in_range) // 2]
    truth = {s.request_id: s.label for s in TransactionGenerator(9).batch(4096)[:1200]}
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for rid in labelled:
        p.produce(registry.name("outcomes"), Outcome(rid, truth[rid], int(time.time() * 1000)).to_json(),
                  rid.encode())
        p.produce(registry.name("results"), Result(rid, 0.5, None, None, "default", 100.0, {}, None, 1).to_json(),
                  timestamp=sent[rid].ts + 100)                   # answered when the request came
    # a second outcome of the same request, keyed as outcomes are (so after the first in its partition): ignored
    p.produce(registry.name("outcomes"), Outcome(labelled[0], 1 - truth[labelled[0]], 1).to_json(), labelled[0].encode())
    assert p.flush(30) == 0
    out = tmp_path / "graded.parquet"
    summary = replay(TimeRange(t0, t1), (MODEL, "fraud_lr@1"), out, late_ms=LATE, registry=registry,
                     bootstrap=broker.bootstrap, with_outcomes=True)
    table = pq.read_table(out).to_pydict()
    labels = dict(zip(table["request_id"], table["label"]))
    assert {rid: labels[rid] for rid in labelled} == {rid: truth[rid] for rid in labelled}
    assert sum(v is None for v in labels.values()) == len(in_range) - len(labelled)
    scores, graded_labels = summary.graded[MODEL]
    assert len(graded_labels) == len(labelled)
    g = grades(scores, graded_labels)
    assert 0.6 < g["auc"] <= 1 and 0 < g["brier"] < 0.2
    served = grades(*summary.graded["served"])
    assert served["n"] == len(labelled) and served["brier"] == pytest.approx(0.25)   # every served answer is 0.5
    done = subprocess.run([sys.executable, "-m", "scorestream.cli", "replay", "--from", str(t0), "--to", str(t1),
                           "--model", MODEL, "--with-outcomes", "--late-ms", str(LATE)],
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": broker.bootstrap,
                                                          "SCORESTREAM_TOPIC_PREFIX": registry.name("requests")
                                                          .split("scoring.")[0]})
    assert done.returncode == 0, done.stderr
    assert "answers served" in done.stdout and "Brier" in done.stdout and "0.2500" in done.stdout
