import pytest

from decoy.timerange import TimeRange, format_time, offset_ranges, parse_time
from scorestream.errors import UserError


@pytest.mark.parametrize("text", ["1700000000000", "2023-11-14T22:13:20Z", "2023-11-14T22:13:20.000+00:00",
                                  "2023-11-14T23:13:20+01:00", "2023-11-14 22:13:20", "2023-11-14T22:13:20"])
def test_one_moment_many_spellings(text):
    assert parse_time(text) == 1_700_000_000_000


def test_milliseconds_and_dates():
    assert parse_time("2023-11-14T22:13:20.123Z") == 1_700_000_000_123
    assert parse_time("2023-11-14") == parse_time("2023-11-14T00:00:00Z")
    assert format_time(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


@pytest.mark.parametrize("text", ["yesterday", "", "17e11", "2023-13-01"])
def test_nonsense_is_refused_with_examples(text):
    with pytest.raises(UserError, match="epoch milliseconds"):
        parse_time(text)


def test_range_is_half_open_and_must_not_be_empty():
    r = TimeRange.parse("1000", "2000")
    assert r.contains(1000) and r.contains(1999) and not r.contains(2000) and not r.contains(999)
    with pytest.raises(UserError, match="must be after"):
        TimeRange.parse("2000", "2000")


def test_offset_ranges():
    high = {0: 10, 1: 10, 2: 0}
    # the whole partition before the range, the range at the very end, an empty partition
    assert offset_ranges({0: -1, 1: 4, 2: -1}, {0: -1, 1: -1, 2: -1}, high) == {1: (4, 10)}
    # the end lookup may come back beyond the high watermark answered earlier: clamp
    assert offset_ranges({0: 0}, {0: 12}, {0: 10}) == {0: (0, 10)}
    # the same first offset for start and end: nothing in between
    assert offset_ranges({0: 3}, {0: 3}, {0: 10}) == {}
