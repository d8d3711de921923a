import socket

from scorestream.ports import ephemeral_range, free_port


def test_free_ports_lie_below_the_ephemeral_range_and_bind():
    low, high = ephemeral_range()
    assert 1024 <= low < high
    for count in (1, 2, 6):
        port = free_port(count)
        assert port + count <= low
        for q in range(port, port + count):
            with socket.socket() as s:
                s.bind(("127.0.0.1", q))
