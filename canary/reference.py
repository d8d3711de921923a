"""References from archived traffic: `scorestream canary reference --from T --to T`.

The range is replayed through the decoy (the live extractor and model code, every model the
policy names), cut into the monitor's windows by the requests' own `ts`, and each series (a
model's scores, its deltas to the canary) gets a reference from those windows exactly as the
live monitor builds one from its first windows. The result replaces the monitor's references
file; a running monitor reads it at its next start.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from canary.monitor import CanarySettings
from canary.stats import Reference, build_reference, sketch
from decoy.replay import replay
from decoy.timerange import TimeRange
from scorestream.topics import TopicRegistry


def from_archive(time_range: TimeRange, models: list[str], canary: str, settings: CanarySettings,
                 registry: TopicRegistry | None = None, bootstrap: str | None = None) -> dict[str, Reference]:
    """series -> Reference, from the windows of the range that hold at least min_count requests."""
    with tempfile.TemporaryDirectory(prefix="scorestream-reference-") as tmp:
        out = Path(tmp) / "replay.parquet"
        summary = replay(time_range, tuple(models), out, registry=registry, bootstrap=bootstrap)
        if not summary.rows_written:
            return {}
        table = pq.read_table(out, columns=["request_ts", *models])
        ts = table.column("request_ts").to_numpy()
        scores = {m: table.column(m).to_numpy() for m in models}
    window_ms = int(settings.window_s * 1000)
    starts = ts - ts % window_ms
    series: dict[str, list] = {}
    for start in np.unique(starts):
        rows = starts == start
        if rows.sum() < settings.min_count:
            continue
        for m in models:
            series.setdefault(f"scores:{m}", []).append(sketch(scores[m][rows]))
            if m != canary:
                series.setdefault(f"delta:{m}", []).append(sketch(scores[m][rows] - scores[canary][rows]))
    return {name: build_reference(windows, settings.floor, settings.multiplier)
            for name, windows in series.items() if len(windows) >= 2}
