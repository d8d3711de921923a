"""The embedded broker: start, refuse clearly, stop cleanly."""

import os
import subprocess
import sys

import pytest

from scorestream.broker import Broker, broker_answers
from scorestream.errors import UserError
from scorestream.process import _start_time
from scorestream.settings import StackSettings
from scorestream.ports import free_port


def test_session_broker_answers(broker):
    assert broker.running() and broker_answers(broker.bootstrap)


def test_port_taken_is_refused_without_a_stray_process(broker, tmp_path):
    other = Broker(StackSettings(home=tmp_path, kafka_port=broker.settings.kafka_port))
    with pytest.raises(UserError, match=f"port {broker.settings.kafka_port} .* is taken"):
        other.start()
    assert not other.running()


def test_broker_that_cannot_start_says_so_and_leaves_nothing(tmp_path):
    bad = Broker(StackSettings(home=tmp_path, kafka_port=free_port(2), kafka_heap="1k"))
    with pytest.raises(UserError, match="exited during start"):
        bad.start()
    assert not bad.running()


def test_cli_up_twice_down_twice(tmp_path):
    env = os.environ | {"SCORESTREAM_HOME": str(tmp_path), "SCORESTREAM_KAFKA_PORT": str(free_port(2)),
                        "SCORESTREAM_TOPIC_PREFIX": "cli.", "SCORESTREAM_UP_WARM_UP": "0"}
    env.pop("SCORESTREAM_BOOTSTRAP_SERVERS", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scorestream.cli", *args], env=env,
                               capture_output=True, text=True, timeout=120)

    first = run("up")
    assert first.returncode == 0, first.stderr
    assert "kafka ready" in first.stdout and "create cli.scoring.archive" in first.stdout
    second = run("up")
    assert second.returncode == 0 and "already running" in second.stdout
    assert "nothing to do" in second.stdout
    status = run("status")
    assert "running" in status.stdout
    pid = int((tmp_path / "run" / "kafka.pid").read_text().split()[0])
    assert run("down").returncode == 0
    assert _start_time(pid) is None
    again = run("down")
    assert again.returncode == 0 and "nothing was running" in again.stdout
