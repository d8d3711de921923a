"""Fixtures shared by every test: the real broker once per session, unique topics per test."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from scorestream import kafka, topics
from scorestream.broker import Broker
from scorestream.settings import StackSettings


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (broker and controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def free_port_block(n: int) -> int:
    """A port p with p .. p + n - 1 free on 127.0.0.1 (the nodes of a local cluster and their controllers)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + n > 65536:
            continue
        try:
            for q in range(port + 1, port + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {n} free ports in a row")


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    """One real Kafka broker for the session, started by the same code as `scorestream up`."""
    home = tmp_path_factory.mktemp("stack")
    settings = StackSettings(home=home, kafka_port=free_port_pair())
    b = Broker(settings)
    b.start()
    os.environ["SCORESTREAM_BOOTSTRAP_SERVERS"] = b.bootstrap
    os.environ["SCORESTREAM_HOME"] = str(home)
    yield b
    b.stop()


@pytest.fixture
def registry(broker, monkeypatch) -> topics.TopicRegistry:
    """Every topic of topics.yaml under a prefix of this test's own, created on the broker."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("SCORESTREAM_TOPIC_PREFIX", prefix)
    reg = topics.TopicRegistry.load(prefix=prefix)
    topics.apply(kafka.admin(broker.bootstrap), reg)
    return reg


@pytest.fixture
def cli_env(broker, registry) -> dict[str, str]:
    """Environment for running the scorestream CLI as a subprocess against the test broker."""
    return os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": broker.bootstrap,
                         "SCORESTREAM_TOPIC_PREFIX": next(iter(registry)).name.split("scoring.")[0]}


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
