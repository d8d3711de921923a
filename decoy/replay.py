"""Replay: a time range of scoring.archive, decoded and scored by the live extractor and model code.

Everything a replay could refuse (an unknown model, a live topic as sandbox)
is refused before the first record is read.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from decoy.reader import RangeReader
from decoy.record import ArchivedRequest
from decoy.scoring import Scorer
from decoy.sinks import ParquetSink, TopicSink
from decoy.timerange import TimeRange
from scorestream.contract import ContractError, KafkaRecord, Outcome, Request, Result
from scorestream.swap import is_control
from scorestream.topics import TopicRegistry

CHUNK = 4096
AGREE_WITHIN = 1e-6        # served and replayed scores are the same float32 through the same code
SERVED_AFTER_MS = 60_000   # how long after the range an answer to one of its requests is looked for


@dataclass
class Agreement:
    compared: int = 0
    agreed: int = 0
    max_delta: float = 0.0


@dataclass
class ReplaySummary:
    time_range: TimeRange
    read: int = 0                                   # archive records in the range
    malformed: Counter = field(default_factory=Counter)   # reason -> count: skipped, not scored
    control: int = 0                                # control records archived (swap tokens): skipped
    scored: int = 0
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)
    served: dict[str, Agreement] = field(default_factory=dict)
    rows_written: int = 0
    out: Path | None = None
    republished: int = 0
    republish_failed: int = 0
    seconds: float = 0.0
    # --with-outcomes: the labels (request_id -> 0|1), the answers served, and (scores, labels) per ref or "served"
    labels: dict[str, int] | None = None
    answers: dict[str, float] = field(default_factory=dict)
    graded: dict[str, tuple[list, list]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.malformed.values())

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    def quantiles(self, ref: str, qs=(0.01, 0.05, 0.5, 0.95, 0.99)) -> list[float]:
        values = np.concatenate(self.scores[ref]) if self.scores.get(ref) else np.empty(0)
        return [float(v) for v in np.quantile(values, qs)] if len(values) else []


def served_scores(registry: TopicRegistry, time_range: TimeRange, refs: list[str], late_ms: int,
                  bootstrap: str | None) -> dict[str, tuple[str, float]]:
    """request_id -> (model ref, score) of the answers in scoring.results given by one of `refs`."""
    wanted, out = set(refs), {}
    window = TimeRange(time_range.start_ms, time_range.end_ms + late_ms + SERVED_AFTER_MS)
    for m in RangeReader(registry.name("results"), window, late_ms=0, bootstrap=bootstrap):
        try:
            result = Result.from_json(m.value())
        except ContractError:
            continue                       # the rendezvous's own dead letters are not ours to judge
        if result.model is not None and f"{result.model}@{result.version}" in wanted:
            out[result.request_id] = (f"{result.model}@{result.version}", result.score)
    return out


def outcome_labels(registry: TopicRegistry, time_range: TimeRange, bootstrap: str | None) -> dict[str, int]:
    """request_id -> label of every outcome written from the range's start until now (the first one counts)."""
    labels: dict[str, int] = {}
    window = TimeRange(time_range.start_ms, int(time.time() * 1000) + 1)
    for m in RangeReader(registry.name("outcomes"), window, late_ms=0, bootstrap=bootstrap):
        try:
            outcome = Outcome.from_json(m.value())
        except ContractError:
            continue
        labels.setdefault(outcome.request_id, outcome.label)
    return labels


def answered_scores(registry: TopicRegistry, time_range: TimeRange, late_ms: int,
                    bootstrap: str | None) -> dict[str, float]:
    """request_id -> the score actually served (the default's included)."""
    out = {}
    window = TimeRange(time_range.start_ms, time_range.end_ms + late_ms + SERVED_AFTER_MS)
    for m in RangeReader(registry.name("results"), window, late_ms=0, bootstrap=bootstrap):
        try:
            result = Result.from_json(m.value())
        except ContractError:
            continue
        if result.score is not None:              # a rejected request was not scored
            out.setdefault(result.request_id, result.score)
    return out


def grades(scores: list[float], labels: list[int]) -> dict[str, float]:
    """AUC (nan with one class only), log loss and Brier score of scores against labels."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y, p = np.asarray(labels), np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    auc = float(roc_auc_score(y, p)) if len(set(labels)) == 2 else float("nan")
    return {"n": len(y), "auc": auc, "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "brier": float(brier_score_loss(y, p))}


def replay(time_range: TimeRange, model_refs: tuple[str, ...] = (), out: Path | None = None,
           to_topic: str | None = None, with_payload: bool = False, late_ms: int = 10_000,
           registry: TopicRegistry | None = None, bootstrap: str | None = None,
           progress: Callable[[int], ContextManager[Callable[[int], None]]] | None = None,
           with_outcomes: bool = False) -> ReplaySummary:
    """Replay `time_range`; `progress(total)` gives a context whose value is called with records done.
    With outcomes: each request's label (scoring.outcomes) is a column, and every model and the served
    answers are graded against the labels."""
    registry = registry or TopicRegistry.load()
    scorer = Scorer(model_refs)                                   # unknown models refused here
    republish = TopicSink(to_topic, registry, bootstrap) if to_topic else None
    summary = ReplaySummary(time_range, out=out, scores={ref: [] for ref in scorer.refs},
                            served={ref: Agreement() for ref in scorer.refs})
    reader = RangeReader(registry.name("archive"), time_range, late_ms, bootstrap)
    if reader.upper_bound == 0:
        reader.consumer.close()
        return summary
    served = served_scores(registry, time_range, scorer.refs, late_ms, bootstrap) if scorer.refs else {}
    if with_outcomes:
        summary.labels = outcome_labels(registry, time_range, bootstrap)
        summary.answers = answered_scores(registry, time_range, late_ms, bootstrap)
        summary.graded = {ref: ([], []) for ref in [*scorer.refs, "served"]}
    sink = ParquetSink(out, scorer.refs, scorer.extractor_label, with_payload, summary.labels) if out else None
    started = time.perf_counter()
    with (progress or _no_progress)(reader.upper_bound) as advance:
        chunk: list[tuple[ArchivedRequest, Request]] = []
        for m in reader:
            summary.read += 1
            archived = _decode(KafkaRecord.from_message(m), summary)
            if archived is None:
                continue
            if republish:
                republish.write(archived[0])
            if archived[1] is not None:
                chunk.append(archived)
            if len(chunk) >= CHUNK:
                _score(chunk, scorer, sink, served, summary)
                chunk = []
                advance(summary.read)
        _score(chunk, scorer, sink, served, summary)
    if sink:
        sink.close()
        summary.rows_written = sink.rows
    if republish:
        republish.close()
        summary.republished, summary.republish_failed = republish.delivered, republish.failed
    summary.seconds = time.perf_counter() - started
    return summary


@contextmanager
def _no_progress(_total: int):
    yield lambda _done: None


def _decode(record: KafkaRecord, summary: ReplaySummary) -> tuple[ArchivedRequest, Request | None] | None:
    """(archived, request); request None when malformed (still republished: the pipeline saw it)."""
    try:
        archived = ArchivedRequest.from_record(record)
    except ContractError:
        summary.malformed["not written by the decoy"] += 1
        return None
    if is_control(archived.original.headers):      # a swap token: not a request, never replayed
        summary.control += 1
        return None
    try:
        return archived, Request.from_record(archived.original)
    except ContractError as exc:
        summary.malformed["not a request: " + (f"field {exc.field!r}" if exc.field else "not JSON")] += 1
        return archived, None


def _score(chunk, scorer: Scorer, sink: ParquetSink | None, served: dict, summary: ReplaySummary) -> None:
    if not chunk:
        return
    scored = scorer.score([r for _, r in chunk])
    for exc in scored.refused:
        summary.malformed[f"extractor refused: field {exc.field!r}"] += 1
    kept = [chunk[i] for i in scored.kept]
    summary.scored += len(kept)
    if summary.labels is not None:
        _grade(kept, scored.scores, summary)
    for ref, values in scored.scores.items():
        summary.scores[ref].append(values)
        agreement = summary.served[ref]
        for (_, request), value in zip(kept, values.tolist()):
            answer = served.get(request.request_id)
            if answer is not None and answer[0] == ref:
                delta = abs(answer[1] - value)
                agreement.compared += 1
                agreement.agreed += delta <= AGREE_WITHIN
                agreement.max_delta = max(agreement.max_delta, delta)
    if sink:
        sink.write(kept, scored.scores)


def _grade(kept, scores: dict[str, np.ndarray], summary: ReplaySummary) -> None:
    for i, (_, request) in enumerate(kept):
        label = summary.labels.get(request.request_id)
        if label is None:
            continue
        for ref, values in scores.items():
            summary.graded[ref][0].append(float(values[i]))
            summary.graded[ref][1].append(label)
        answer = summary.answers.get(request.request_id)
        if answer is not None:
            summary.graded["served"][0].append(answer)
            summary.graded["served"][1].append(label)
