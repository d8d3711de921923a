"""The monitor's logic, without Kafka: records in, windows judged, alert records out.

Per window and model: a KLL sketch of its scores, and of its score minus the
canary's on the same requests (joined here by request id, within JOIN_HORIZON_MS).
Per window: the answers' latency, rules, and which models' scores were missing
from each answer. At each window's close, three drift signals and three SLOs are
judged (docs/canary.md) and the AlertBook decides what to publish.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic_settings import BaseSettings, SettingsConfigDict

from canary import metrics as m
from canary.alerts import AlertBook, runbook_link
from canary.stats import (Reference, build_reference, burn_rate, ks_distance, load_references, save_references,
                          share_beyond)
from canary.windows import Window, Windows
from scorestream.contract import Alert

log = logging.getLogger(__name__)

JOIN_HORIZON_MS = 10_000      # scores of one request further apart than this are not paired
SYSTEM = "*"                  # the model field of alerts about the whole system
QUANTILES = (0.1, 0.5, 0.9, 0.99)


class CanarySettings(BaseSettings):
    """Every field is a `scorestream canary` setting: SCORESTREAM_CANARY_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_CANARY_", frozen=True, extra="ignore")

    window_s: float = 60.0            # tumbling window length
    grace_s: float = 5.0              # how long after its end a window waits for stragglers
    reference_windows: int = 5        # windows after start (or after a model appears) that make its reference
    min_count: int = 100              # fewer values in a window: not judged
    floor: float = 0.05               # lowest KS threshold: ~2x the sketches' rank error plus sampling noise
    multiplier: float = 2.5           # threshold = max(floor, multiplier x the reference's largest window-to-window KS)
    max_delta: float = 0.2            # |model - canary| beyond this is "far" ...
    max_far_share: float = 0.2        # ... and more than this share of far requests is a canary_delta, whatever the reference
    fire_after: int = 1               # windows in a row over the threshold before an alert fires
    clear_after: int = 2              # windows in a row under it before it is resolved
    slo_default: float = 0.99         # answers given by a model (not the default rule)
    slo_sla: float = 0.99             # answers within the policy's sla_ms
    slo_model_late: float = 0.95      # answers that had a given model's score
    burn_threshold: float = 14.4      # page when both windows burn the budget this many times too fast
    short_windows: int = 5            # the short burn-rate window, in windows (5 min at 60 s)
    long_windows: int = 60            # the long one (1 h at 60 s): 2 % of a 30-day budget gone in an hour
    metrics_port: int = 0
    fetch_wait_ms: int = 250          # the broker may hold the monitor's fetches this long to gather records; 0: none
    state_dir: Path | None = None     # where references are kept; None: <SCORESTREAM_HOME>/canary
    rejoin_limit_s: float = 30.0      # its consumer out of its group this long is taken for stuck and replaced


@dataclass
class Pending:
    """Scores of one request seen so far, for the canary pairing."""

    first_ms: float
    canary: float | None
    models: dict[str, float]


class Monitor:
    def __init__(self, settings: CanarySettings, canary: str, known_models: set[str], policy_models: set[str],
                 sla_ms: float, state_file: Path | None = None, clock=lambda: time.time() * 1000):
        self.s, self.canary, self.sla_ms = settings, canary, sla_ms
        self.known = known_models | policy_models | {canary}      # scores of others are counted as bad
        self.answering = sorted(policy_models | {canary})          # models whose late scores the SLO watches
        self.windows = Windows(int(settings.window_s * 1000), int(settings.grace_s * 1000), clock)
        self.clock = clock
        self.book = AlertBook(settings.fire_after, settings.clear_after)
        self.pending: dict[str, Pending] = {}
        self.collecting: dict[str, list] = {}          # series -> reference windows so far
        self.references: dict[str, Reference] = {}     # series ("scores:<model>", "delta:<model>") -> reference
        self.history: deque[Window] = deque(maxlen=settings.long_windows)
        self.bad: dict[str, int] = {}
        self.state_file = state_file
        self._load_references()

    # -- records in ---------------------------------------------------------------------------------------
    def _bad(self, reason: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1
        m.BAD_SCORES.labels(reason).inc()

    def on_score(self, value: bytes | None) -> None:
        try:
            doc = orjson.loads(value)
            if doc.get("kind") == "token":          # a hot swap's token passing through: not a score, not bad
                return
            model, score, at = f"{doc['model']}@{doc['version']}", doc["score"], float(doc["scored_at"])
            rid = str(doc["request_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return self._bad("malformed")
        if model not in self.known:
            return self._bad("unknown_model")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
            return self._bad("not_a_number")
        if not 0.0 <= score <= 1.0:
            return self._bad("out_of_range")
        window = self.windows.at(at)
        if window is None:
            m.LATE_RECORDS.inc()
            return
        m.SCORES.labels(model).inc()
        window.add(window.scores, model, score)
        p = self.pending.get(rid)
        if p is None:
            p = self.pending[rid] = Pending(self.clock(), None, {})
        if model == self.canary:
            if p.canary is None:
                p.canary = score
                for other, s in p.models.items():
                    window.add(window.deltas, other, s - score)
        elif model not in p.models:
            p.models[model] = score
            if p.canary is not None:
                window.add(window.deltas, model, score - p.canary)

    def on_result(self, value: bytes | None, ts_ms: float) -> None:
        """An answer; rejections (rule "rejected", no score) count for nothing but their rule."""
        try:
            doc = orjson.loads(value)
            rule, latency = str(doc["rule"]), float(doc.get("latency_ms") or 0.0)
            candidates = doc.get("candidates") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            m.ANSWERS.labels("malformed").inc()
            return
        m.ANSWERS.labels(rule).inc()
        if rule == "rejected":
            return
        window = self.windows.at(ts_ms)
        if window is None:
            m.LATE_RECORDS.inc()
            return
        window.by_rule[rule] += 1
        window.answers += 1
        window.latency.update(latency)
        m.LATENCY.observe(latency / 1000.0)
        if latency <= self.sla_ms:
            window.within_sla += 1
            m.WITHIN_SLA.inc()
        for model in self.answering:
            if model not in candidates:
                window.missing[model] += 1
                m.MISSING.labels(model).inc()

    # -- windows judged -----------------------------------------------------------------------------------
    def tick(self) -> list[Alert]:
        """Close what is due, judge it; the alert records to publish."""
        now = self.clock()
        for rid in [r for r, p in self.pending.items() if now - p.first_ms > JOIN_HORIZON_MS]:
            del self.pending[rid]
        out: list[Alert] = []
        for window in self.windows.due(now):
            out += self.judge(window)
        return out

    def judge(self, w: Window) -> list[Alert]:
        m.WINDOWS.inc()
        out: list[Alert] = []
        for model, s in w.scores.items():
            if s.n >= self.s.min_count:
                for q, v in zip(QUANTILES, s.get_quantiles(list(QUANTILES))):
                    m.QUANTILE.labels(model, str(q)).set(v)
        canary_w = w.scores.get(self.canary)
        for model, s in sorted(w.scores.items()):
            signal = "canary_drift" if model == self.canary else "model_drift"
            out += self._drift(w, signal, model, f"scores:{model}", s,
                               "the canary's scores moved from its reference: the world changed, not a model"
                               if model == self.canary else f"{model}'s scores moved from its own reference")
            if model != self.canary and canary_w is not None and canary_w.n >= self.s.min_count \
                    and s.n >= self.s.min_count:
                m.VS_CANARY.labels(model).set(ks_distance(s, canary_w))
        for model, d in sorted(w.deltas.items()):
            out += self._drift(w, "canary_delta", model, f"delta:{model}", d,
                               f"{model}'s scores, request by request against the canary's, changed")
        out += self._slos(w)
        return out

    def _drift(self, w: Window, signal: str, model: str, series: str, s, reason: str) -> list[Alert]:
        if s.n < self.s.min_count:
            return []
        ref = self.references.get(series)
        far = share_beyond(s, self.s.max_delta) if signal == "canary_delta" else 0.0
        if ref is None:
            windows = self.collecting.setdefault(series, [])
            windows.append(s)
            if len(windows) >= self.s.reference_windows:
                self.references[series] = build_reference(windows, self.s.floor, self.s.multiplier)
                del self.collecting[series]
                self._save_references()
                log.info("reference of %s built from %d windows: threshold %.3f", series, len(windows),
                         self.references[series].threshold)
            if signal != "canary_delta":
                return []            # nothing to judge against yet
            value, threshold, breached = far, self.s.max_far_share, far > self.s.max_far_share
            reason = f"{far:.0%} of {model}'s scores are more than {self.s.max_delta:g} from the canary's"
        else:
            value, threshold = ref.distance(s), ref.threshold_for(s)
            m.KS.labels(model, signal).set(value)
            m.THRESHOLD.labels(model, signal).set(threshold)
            breached = value > threshold
            if not breached and far > self.s.max_far_share:
                value, threshold, breached = far, self.s.max_far_share, True
                reason = f"{far:.0%} of {model}'s scores are more than {self.s.max_delta:g} from the canary's"
        severity = "page" if signal == "canary_delta" else "ticket"
        return self._observe(w, signal, model, breached, value, threshold, "drift", severity, reason)

    def _slos(self, w: Window) -> list[Alert]:
        self.history.append(w)
        long = list(self.history)
        short = long[-self.s.short_windows:]
        out: list[Alert] = []

        def judge(slo: str, model: str, objective: float, bad, reason: str) -> None:
            short_rate = burn_rate(sum(bad(x) for x in short), sum(x.answers for x in short), 1.0 - objective)
            long_rate = burn_rate(sum(bad(x) for x in long), sum(x.answers for x in long), 1.0 - objective)
            m.BURN.labels(slo, model, "short").set(short_rate)
            m.BURN.labels(slo, model, "long").set(long_rate)
            if not w.answers:
                return
            breached = min(short_rate, long_rate) >= self.s.burn_threshold
            out.extend(self._observe(w, slo, model, breached, min(short_rate, long_rate), self.s.burn_threshold,
                                     "slo", "page", reason))

        judge("default_answers", SYSTEM, self.s.slo_default, lambda x: x.by_rule.get("default", 0),
              f"answers by the default rule burn the error budget ({1 - self.s.slo_default:.0%}) too fast")
        judge("sla", SYSTEM, self.s.slo_sla, lambda x: x.answers - x.within_sla,
              f"answers later than the SLA ({self.sla_ms:g} ms) burn the error budget too fast")
        for model in self.answering:
            judge("model_late", model, self.s.slo_model_late, lambda x, model=model: x.missing.get(model, 0),
                  f"answers given without {model}'s score (late or missing) burn the error budget too fast")
        return out

    def _observe(self, w: Window, alert: str, model: str, breached: bool, value: float, threshold: float,
                 kind: str, severity: str, reason: str) -> list[Alert]:
        def record(state: str, first_seen: int) -> Alert:
            m.FIRING.labels(alert, model).set(1 if state == "firing" else 0)
            m.ALERTS.labels(alert, state).inc()
            return Alert(alert, model, round(float(value), 4), round(float(threshold), 4), w.label,
                         int(self.clock()), state, kind, severity, first_seen, reason, runbook_link(alert))

        r = self.book.observe((alert, model), breached, w.start_ms, record)
        return [r] if r is not None else []

    def restore(self, records: list[Alert]) -> None:
        self.book.restore(records)
        for a in records:
            m.FIRING.labels(a.alert, a.model).set(1 if a.state == "firing" else 0)

    # -- references kept across restarts ------------------------------------------------------------------
    def _save_references(self) -> None:
        if self.state_file:
            save_references(self.references, self.state_file)

    def _load_references(self) -> None:
        if self.state_file and self.state_file.exists():
            try:
                self.references = load_references(self.state_file)
                log.info("references read from %s: %s", self.state_file, ", ".join(sorted(self.references)))
            except (ValueError, KeyError, RuntimeError) as exc:
                log.warning("references in %s unreadable (%s): building new ones", self.state_file, exc)
