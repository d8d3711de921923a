"""Scoring a micro-batch without Kafka: one score or one reason per record, poisoned rows fail alone."""

import math

import numpy as np
import orjson
import pytest

from models.core import Stamp, parse, Reject, score_batch
from models.registry import load_model
from scorestream.contract import Features, KafkaRecord

STAMP = Stamp("fraud_lr", 1, "canary", "host-1", "host")


def features_record(i: int, features=None, extractor="txn@1", offset=None) -> KafkaRecord:
    f = Features(f"r{i}", 1_700_000_000_000, extractor, tuple(features if features is not None else [0.5] * 20))
    return KafkaRecord(f.key, f.to_json(), (), "t.scoring.features", 0, i if offset is None else offset, 1)


def raw(i: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord(f"r{i}".encode(), value, (), "t.scoring.features", 0, i, 1)


class FakeModel:
    """Doubles the first feature; raises on any batch holding a row whose first feature is 13."""

    ref, extractor, width = "fake@1", "txn@1", 20
    feature_names = tuple(f"f{i}" for i in range(20))

    def __init__(self):
        self.calls = 0

    def predict(self, X):
        self.calls += 1
        if (X[:, 0] == 13).any():
            raise RuntimeError("poisoned")
        return X[:, 0].astype(np.float64) * 2


def test_scores_carry_every_annotation():
    model = load_model("fraud_lr@1")
    records = [features_record(i) for i in range(5)]
    result = score_batch(model, records, STAMP, received_at=10.0, clock=lambda: 12.5)
    assert not result.rejected and len(result.scored) == 5
    record, score = result.scored[0]
    assert record is records[0]
    assert (score.request_id, score.model, score.version, score.role) == ("r0", "fraud_lr", 1, "canary")
    assert (score.worker, score.host, score.extractor) == ("host-1", "host", "txn@1")
    assert (score.received_at, score.scored_at) == (10.0, 12.5)
    assert score.score == pytest.approx(float(model.predict(np.full((1, 20), 0.5, np.float32))[0]))


@pytest.mark.parametrize("record, words", [
    (raw(0, b"not json"), "not JSON"),
    (raw(0, None), "no value"),
    (raw(0, b"[1, 2]"), "must be a JSON object"),
    (raw(0, b'{"request_id": "r", "extractor": "txn@1", "features": [1.0]}'), "'ts' is missing"),
    (raw(0, orjson.dumps({"request_id": "r", "ts": 1, "extractor": "txn@1", "features": [1.0] * 19 + ["x"]})),
     "features[19]"),
    (raw(0, orjson.dumps({"request_id": "r", "ts": 1, "extractor": "txn@1", "features": [1.0] * 19 + [None]})),
     "features[19]"),
    (raw(0, orjson.dumps({"request_id": "r", "ts": 1, "extractor": "txn@1", "features": [True] * 20})),
     "features[0]"),
    (features_record(0, [1.0] * 19), "19 features: fraud_lr@1 takes 20"),
    (features_record(0, extractor="txn@2"), "'txn@2': fraud_lr@1 takes features of 'txn@1'"),
    (features_record(0, [1.0] * 10 + [1e39] + [1.0] * 9), "not finite as float32"),
])
def test_bad_records_are_rejected_with_a_reason(record, words):
    model = load_model("fraud_lr@1")
    good = [features_record(i, offset=100 + i) for i in range(3)]
    result = score_batch(model, [good[0], record, good[1], good[2]], STAMP, 0.0)
    assert [r for r, _ in result.scored] == good          # neighbours are scored
    assert len(result.rejected) == 1 and result.rejected[0][0] is record
    assert words in result.rejected[0][1]


def test_non_finite_reason_names_the_features():
    model = load_model("fraud_lr@1")
    row = [1.0] * 20
    row[model.feature_names.index("local_hour")] = 1e39
    (_, reason), = score_batch(model, [features_record(0, row)], STAMP, 0.0).rejected
    assert "local_hour" in reason


def test_a_model_that_raises_is_retried_row_by_row():
    model = FakeModel()
    rows = [[float(i)] + [0.0] * 19 for i in range(20)]       # row 13 poisons any batch holding it
    result = score_batch(model, [features_record(i, r) for i, r in enumerate(rows)], STAMP, 0.0)
    assert model.calls == 1 + 20
    assert [s.request_id for _, s in result.scored] == [f"r{i}" for i in range(20) if i != 13]
    assert [s.score for _, s in result.scored] == [2.0 * i for i in range(20) if i != 13]
    (record, reason), = result.rejected
    assert record.offset == 13 and "fake@1 raised RuntimeError: poisoned" in reason
    assert result.model_errors == 1


def test_a_non_finite_score_is_a_model_failure_not_an_answer():
    class NaNModel(FakeModel):
        def predict(self, X):
            return np.where(X[:, 0] == 1, math.nan, 0.5)

    result = score_batch(NaNModel(), [features_record(i, [float(i)] + [0.0] * 19) for i in range(3)], STAMP, 0.0)
    assert [s.request_id for _, s in result.scored] == ["r0", "r2"]
    assert "non-finite score" in result.rejected[0][1] and result.model_errors == 1


def test_parse_fast_path_agrees_with_the_contract():
    rec = features_record(4, [float(i) for i in range(20)])
    assert parse(rec.value) == ("r4", "txn@1", [float(i) for i in range(20)])
    with pytest.raises(Reject, match="Features: field 'extractor' must be str"):
        parse(orjson.dumps({"request_id": "r", "ts": 1, "extractor": 3, "features": []}))


def test_observe_many_equals_observe_one_by_one():
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.exposition import generate_latest

    from models.metrics import observe_many
    from scorestream.metrics import LATENCY_BUCKETS

    values = np.array([0.0, 0.0005, 0.0007, 0.1, 0.1000001, 3.0, 0.02, 0.02])
    out = []
    for bulk in (False, True):
        reg = CollectorRegistry()
        child = Histogram("h_seconds", "h", ["model"], buckets=LATENCY_BUCKETS, registry=reg).labels("m")
        if bulk:
            observe_many(child, values)
        else:
            for v in values:
                child.observe(float(v))
        out.append(b"\n".join(line for line in generate_latest(reg).splitlines() if b"_created" not in line))
    assert out[0] == out[1]
