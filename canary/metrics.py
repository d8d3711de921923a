"""The monitor's Prometheus metrics: scorestream_canary_*.

Counters are what Prometheus's own rules turn into burn rates (canary/rules.yml);
the gauges carry the drift figures judged at each window's close.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from scorestream.metrics import LATENCY_BUCKETS

SCORES = Counter("scorestream_canary_scores_total", "Scores read and kept, by model", ["model"])
BAD_SCORES = Counter("scorestream_canary_bad_scores_total",
                     "Score records left out: not JSON, score outside [0, 1] or NaN, unknown model", ["reason"])
ANSWERS = Counter("scorestream_canary_answers_total", "Answers read from scoring.results, by rule", ["rule"])
WITHIN_SLA = Counter("scorestream_canary_answers_within_sla_total", "Answers (not rejections) within the SLA")
MISSING = Counter("scorestream_canary_answers_without_score_total",
                  "Answers given before this model's score arrived (its score was late)", ["model"])
LATENCY = Histogram("scorestream_canary_answer_latency_seconds", "Answers' latency_ms, in seconds",
                    buckets=LATENCY_BUCKETS)
LATE_RECORDS = Counter("scorestream_canary_late_records_total", "Records whose window had already closed")
WINDOWS = Counter("scorestream_canary_windows_closed_total", "Windows closed and judged")
KS = Gauge("scorestream_canary_ks_distance", "KS distance judged at the last window's close",
           ["model", "signal"])
THRESHOLD = Gauge("scorestream_canary_ks_threshold", "Threshold of that distance, from the reference",
                  ["model", "signal"])
VS_CANARY = Gauge("scorestream_canary_ks_vs_canary", "KS distance of a model's scores to the canary's, same window",
                  ["model"])
QUANTILE = Gauge("scorestream_canary_score_quantile", "Score quantiles of the last closed window",
                 ["model", "quantile"])
BURN = Gauge("scorestream_canary_burn_rate", "Error-budget burn rate of an SLO over the short and long windows",
             ["slo", "model", "window"])
FIRING = Gauge("scorestream_canary_alert_firing", "1 while the monitor's alert fires", ["alert", "model"])
ALERTS = Counter("scorestream_canary_alerts_sent_total", "Alert records written to scoring.alerts",
                 ["alert", "state"])
