"""The time range of a replay: parsing the bounds, and turning them into offsets.

A range is half-open, [start, end): a request seen exactly at `end` belongs to
the next range, so consecutive replays never count a request twice.

>>> parse_time("1700000000000")
1700000000000
>>> parse_time("2023-11-14T22:13:20Z"), parse_time("2023-11-14T23:13:20+01:00"), parse_time("2023-11-14 22:13:20")
(1700000000000, 1700000000000, 1700000000000)
>>> TimeRange.parse("2023-11-14", "2023-11-15").contains(parse_time("2023-11-15"))
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from scorestream.errors import UserError


def parse_time(text: str) -> int:
    """Epoch ms from epoch ms digits or ISO-8601 (a time without an offset is UTC)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is neither epoch milliseconds nor an ISO-8601 time "
                        "(e.g. 1700000000000, 2023-11-14T22:13:20Z, 2023-11-14)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeRange:
    start_ms: int     # included
    end_ms: int       # excluded

    @classmethod
    def parse(cls, start: str, end: str) -> "TimeRange":
        r = cls(parse_time(start), parse_time(end))
        if r.end_ms <= r.start_ms:
            raise UserError(f"--to ({format_time(r.end_ms)}) must be after --from ({format_time(r.start_ms)})")
        return r

    def contains(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms

    def __str__(self) -> str:
        return f"[{format_time(self.start_ms)}, {format_time(self.end_ms)})"


def offset_ranges(first_at_start: dict[int, int], first_at_end: dict[int, int],
                  high: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets [from, to) to read, from offsets_for_times answers.

    offsets_for_times gives the first offset whose timestamp is >= the time, or
    -1 when there is none (every record is older): then the end of the partition.
    Partitions with nothing to read are left out.

    >>> offset_ranges({0: 5, 1: -1, 2: 0}, {0: 9, 1: -1, 2: -1}, {0: 20, 1: 7, 2: 3})
    {0: (5, 9), 2: (0, 3)}
    """
    out = {}
    for p, hi in high.items():
        start = first_at_start.get(p, -1)
        start = hi if start < 0 else start
        end = first_at_end.get(p, -1)
        end = hi if end < 0 else min(end, hi)
        if end > start:
            out[p] = (start, end)
    return out
