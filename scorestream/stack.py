"""The embedded stack: `up`, `down`, `status` over the broker and the stack's processes.

Every process the stack starts is a ManagedProcess under <home>/run; `down`
stops them all (the broker last) and `status` lists them, so parts added by
later components need no change here beyond starting themselves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from scorestream import kafka, topics
from scorestream.broker import Broker, broker_answers
from scorestream.process import ManagedProcess
from scorestream.settings import StackSettings


@dataclass(frozen=True)
class PartStatus:
    name: str
    state: str        # running | stopped
    pid: int | None
    where: str


def up(settings: StackSettings | None = None) -> tuple[Broker, float | None, topics.Plan]:
    """Start the broker if needed and apply topics.yaml. Returns seconds to ready (None: was running)."""
    settings = settings or StackSettings()
    broker = Broker(settings)
    seconds = None
    if not broker.running():
        seconds = broker.start()
    settings.state_file.write_text(json.dumps({"bootstrap": broker.bootstrap, "started": time.time()}))
    plan = topics.apply(kafka.admin(broker.bootstrap), topics.TopicRegistry.load())
    return broker, seconds, plan


def processes(settings: StackSettings) -> list[ManagedProcess]:
    run = settings.home / "run"
    names = sorted(p.stem for p in run.glob("*.pid")) if run.exists() else []
    return [ManagedProcess(n, settings.home) for n in names if n != "kafka"]


def down(settings: StackSettings | None = None) -> list[str]:
    """Stop every process of the stack, the broker last. Returns the names stopped."""
    settings = settings or StackSettings()
    stopped = [p.name for p in processes(settings) if p.stop()]
    if Broker(settings).stop():
        stopped.append("kafka")
    settings.state_file.unlink(missing_ok=True)
    return stopped


def status(settings: StackSettings | None = None) -> list[PartStatus]:
    settings = settings or StackSettings()
    broker = Broker(settings)
    pid = broker.process.pid()
    answering = pid is not None and broker_answers(broker.bootstrap)
    rows = [PartStatus("kafka", "running" if answering else ("starting" if pid else "stopped"), pid,
                       f"{broker.bootstrap} (data {broker.dir / 'data'})")]
    for proc in processes(settings):
        pid = proc.pid()
        rows.append(PartStatus(proc.name, "running" if pid else "stopped", pid, f"log {proc.log_file}"))
    return rows
