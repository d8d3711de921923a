"""Scoring one micro-batch of feature records: no Kafka here, so it is tested directly.

A record either becomes one annotated Score or one rejection with a reason
(for the dead-letter topic); nothing is dropped. Parsing takes a fast path
for the common well-formed record and falls back to the wire contract only
to word the error, so the reasons match what every other stage says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import orjson

from scorestream.contract import ContractError, Features, KafkaRecord, Score, now_ms

log = logging.getLogger(__name__)
_NUMBERS = {int, float}


class Scorable(Protocol):
    ref: str
    extractor: str
    width: int
    feature_names: tuple[str, ...]

    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Stamp:
    """Who scores: the annotations every Score of this worker carries."""

    model: str
    version: int
    role: str
    worker: str
    host: str


@dataclass
class BatchResult:
    scored: list[tuple[KafkaRecord, Score]] = field(default_factory=list)
    rejected: list[tuple[KafkaRecord, str]] = field(default_factory=list)
    model_errors: int = 0        # records the model itself failed on (they are also in `rejected`)


class Reject(ValueError):
    """A record this model cannot score; the message is the dead-letter reason."""


def parse(value: bytes | None) -> tuple[str, str, list]:
    """(request_id, extractor, features) of a features record, or Reject with the contract's words."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        doc = value                                # let the contract word it
    if (isinstance(doc, dict) and type(doc.get("request_id")) is str and type(doc.get("ts")) is int
            and type(doc.get("extractor")) is str and type(features := doc.get("features")) is list
            and set(map(type, features)) <= _NUMBERS):
        return doc["request_id"], doc["extractor"], features
    try:
        f = Features.from_json(value) if not isinstance(doc, dict) else Features.from_dict(doc)
    except ContractError as exc:
        raise Reject(str(exc)) from None
    return f.request_id, f.extractor, list(f.features)


def check(model: Scorable, extractor: str, features: list) -> None:
    if extractor != model.extractor:
        raise Reject(f"extractor {extractor!r}: {model.ref} takes features of {model.extractor!r}")
    if len(features) != model.width:
        raise Reject(f"{len(features)} features: {model.ref} takes {model.width}")


def _not_finite(model: Scorable, row: np.ndarray) -> str:
    names = [model.feature_names[i] for i in np.flatnonzero(~np.isfinite(row))[:5]]
    return f"features not finite as float32 (NaN, inf or beyond ±3.4e38): {', '.join(names)}"


def score_batch(model: Scorable, records: list[KafkaRecord], stamp: Stamp, received_at: float,
                clock: Callable[[], float] = now_ms) -> BatchResult:
    """One Score per scorable record, one rejection (with its reason) per other record."""
    result = BatchResult()
    good: list[tuple[KafkaRecord, str]] = []
    rows: list[list] = []
    for record in records:
        try:
            request_id, extractor, features = parse(record.value)
            check(model, extractor, features)
        except Reject as exc:
            result.rejected.append((record, str(exc)))
            continue
        good.append((record, request_id))
        rows.append(features)
    if not rows:
        return result
    with np.errstate(over="ignore"):              # 1e39 becomes inf in float32: caught just below
        X = np.array(rows, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        result.rejected += [(good[i][0], _not_finite(model, X[i])) for i in np.flatnonzero(~finite)]
        good = [g for g, ok in zip(good, finite) if ok]
        X = X[finite]
        if not good:
            return result
    scores, failures = _predict(model, X)
    scored_at = clock()
    for (record, request_id), s in zip(good, scores):
        if s is None:
            continue
        result.scored.append((record, Score(request_id, stamp.model, stamp.version, stamp.role, s, stamp.worker,
                                            received_at, scored_at, model.extractor, stamp.host)))
    for i, reason in failures:
        result.rejected.append((good[i][0], reason))
    result.model_errors = len(failures)
    return result


def _predict(model: Scorable, X: np.ndarray) -> tuple[list[float | None], list[tuple[int, str]]]:
    """Scores of the batch; if the model raises, each row alone, so one poisoned row fails alone."""
    try:
        out = model.predict(X)
        if len(out) != len(X):
            raise ValueError(f"{len(out)} scores for {len(X)} rows")
        return _checked(model, out, 0)
    except Exception as exc:                        # noqa: BLE001 - any runtime error: retry row by row
        log.warning("%s failed on a batch of %d (%s); retrying row by row", model.ref, len(X), exc)
    scores: list[float | None] = []
    failures: list[tuple[int, str]] = []
    for i in range(len(X)):
        try:
            (s,), bad = _checked(model, model.predict(X[i:i + 1]), i)
        except Exception as exc:                    # noqa: BLE001
            s, bad = None, [(i, f"{model.ref} raised {type(exc).__name__}: {str(exc)[:300]}")]
        scores.append(s)
        failures += bad
    return scores, failures


def _checked(model: Scorable, out: np.ndarray, first: int) -> tuple[list[float | None], list[tuple[int, str]]]:
    """A score that is not a finite number is the model's failure on that row, not an answer."""
    out = np.asarray(out, dtype=np.float64).reshape(-1)
    ok = np.isfinite(out)
    scores = [float(s) if good else None for s, good in zip(out.tolist(), ok.tolist())]
    bad = [(first + i, f"{model.ref} returned a non-finite score {out[i]!r}") for i in np.flatnonzero(~ok)]
    return scores, bad
