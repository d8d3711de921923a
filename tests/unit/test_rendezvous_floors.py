"""rendezvous.bench names the floors without importing pyflink: the names stay those rendezvous.floors builds."""

from rendezvous import bench, floors


def test_bench_knows_every_floor():
    assert bench.FLOOR_KINDS == floors.KINDS
