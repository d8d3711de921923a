"""The soak's verdict on memory: growth is measured from the steady sample (after the first quarter), not from
the start, since JVM heaps and caches fill first."""

from scorestream.costs import LOAD_GENERATOR
from scorestream.soak import Mark, memory_table


def marks(*rss: dict[str, float]) -> list[Mark]:
    return [Mark(float(i), r | {LOAD_GENERATOR: 50.0 * (i + 1)}, 10.0) for i, r in enumerate(rss)]


def test_filling_up_first_is_not_growth():
    table, grown = memory_table(marks({"kafka": 300}, {"kafka": 900}, {"kafka": 910}, {"kafka": 905},
                                      {"kafka": 920}), limit=0.10)
    assert grown == []
    assert table.row_count == 1          # the load generator is not a part of the system


def test_a_part_that_keeps_growing_is_named():
    table, grown = memory_table(marks({"decoy": 100, "kafka": 900}, {"decoy": 100, "kafka": 900},
                                      {"decoy": 130, "kafka": 900}, {"decoy": 160, "kafka": 900}), limit=0.10)
    assert grown == ["decoy +60%"]
