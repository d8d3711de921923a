"""Fixtures shared by every test: the real broker once per session, unique topics per test."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from pathlib import Path

import pytest

from scorestream import kafka, topics
from scorestream.broker import Broker
from scorestream.ports import free_port
from scorestream.settings import StackSettings


# The systems the tests start warm up for at most 60 s, not `up`'s 120: they judge latency with the host's load
# (tests/capacity.py), and CI's time is bounded. A test's own --warm-up or env still wins.
os.environ.setdefault("SCORESTREAM_UP_WARM_UP", "60")


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    """One real Kafka broker for the session, started by the same code as `scorestream up`."""
    home = tmp_path_factory.mktemp("stack")
    settings = StackSettings(home=home, kafka_port=free_port(2))
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


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process with the run's status once pytest is done. A Kafka client that a test left behind is
    destroyed at interpreter exit, and librdkafka's destroy can wait without end on the broker that this session
    has already stopped: the run's result is known by then, and CI must not hang on it. Threads left running are
    named first, so that a leak shows."""
    if _EXIT_STATUS not in config.stash:
        return
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if left:
        print(f"threads left running by the tests: {', '.join(left)}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()
