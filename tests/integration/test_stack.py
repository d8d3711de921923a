"""The embedded broker: start, refuse clearly, stop cleanly."""

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def test_up_with_a_part_that_exits_stops_what_it_started(tmp_path):
    """The canary monitor cannot take its metrics port: `up` says so, and stops the broker and every part it
    had started (before, they ran on with nobody to stop them)."""
    base = free_port(60)
    env = os.environ | {"SCORESTREAM_HOME": str(tmp_path), "SCORESTREAM_KAFKA_PORT": str(free_port(2)),
                        "SCORESTREAM_METRICS_PORT_BASE": str(base), "SCORESTREAM_UP_WARM_UP": "0"}
    env.pop("SCORESTREAM_BOOTSTRAP_SERVERS", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 50))        # the canary monitor's (stack.CANARY_PORT_OFFSET)
        taken.listen()
        up = subprocess.run([sys.executable, "-m", "scorestream.cli", "up"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert up.returncode != 0
    assert "canary exited during start" in up.stderr and "stopped what this `up` had started" in up.stderr, up.stderr
    assert "kafka)" in up.stderr.split("stopped what this")[1]
    assert "SCORESTREAM_METRICS_PORT_BASE" in up.stderr            # the part's own error says what to do
    assert not _processes_of(tmp_path)


def _processes_of(home) -> list[int]:
    """Processes whose environment names `home` as SCORESTREAM_HOME (a part, or a JVM it started)."""
    mark, found = f"SCORESTREAM_HOME={home}".encode(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found
