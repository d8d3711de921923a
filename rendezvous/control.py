"""The policy on scoring.control: what is in force, what it replaced, and which models have running workers.

A promoted policy is one Control record (kind `policy`, name `rendezvous`,
compacted by that key). Its body is the policy plus `previous`: the policy it
replaced (without its own `previous`), so `promote --undo` can put it back
even after compaction kept only the latest record. The job reads the policy
fields and ignores `previous`.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from rendezvous.policy import Policy
from scorestream import kafka, security
from scorestream.contract import ContractError, Control
from scorestream.errors import UserError
from scorestream.topics import TopicRegistry


def in_force(registry: TopicRegistry | None = None, bootstrap: str | None = None) -> tuple[dict | None, int | None]:
    """(body of the newest policy record, its timestamp ms), or (None, None) when none was promoted."""
    topic = (registry or TopicRegistry.load()).name("control")
    consumer = kafka.consumer(f"scorestream.policy.{uuid.uuid4().hex[:8]}", bootstrap)
    try:
        low, high = kafka.watermarks(consumer, topic, 0)
        if high <= low:
            return None, None
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        body, ts, deadline = None, None, time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            try:
                control = Control.from_json(msg.value())
            except ContractError:
                continue
            if control.kind == "policy" and control.name == "rendezvous":
                body, ts = control.body, control.ts
            if msg.offset() >= high - 1:
                return body, ts
        raise UserError(f"{topic}: could not read to its end within 30 s; is the broker up?")
    finally:
        consumer.close()


def publish(policy: Policy, previous: dict | None, bootstrap: str | None = None) -> None:
    """Put `policy` in force; `previous` (the body in force) is kept inside the record for undo."""
    body = policy.to_dict()
    if previous is not None:
        body["previous"] = {k: v for k, v in previous.items() if k != "previous"}
    producer = kafka.producer(bootstrap)
    control = Control("policy", "rendezvous", body, int(time.time() * 1000))
    kafka.produce(producer, TopicRegistry.load().name("control"), control.to_record())
    if producer.flush(30):
        raise UserError("the policy was not acknowledged by the broker; is the stack up?")


def without_workers(policy: Policy, bootstrap: str | None = None) -> list[str]:
    """Models the policy names whose consumer group (scorestream.score.NAME@VERSION) has no member now."""
    from models.worker import stage_id

    admin = kafka.admin(bootstrap)
    groups = {ref: f"scorestream.{stage_id(ref)}" for ref in sorted(policy.models)}
    futures = admin.describe_consumer_groups(list(groups.values()), request_timeout=15)
    missing = []
    for ref, group in groups.items():
        try:
            members = futures[group].result(timeout=15).members
        except KafkaException as exc:
            if security.refusal(exc.args[0]):       # not allowed to look is not "no worker"
                raise UserError(security.refusal(exc.args[0], f"consumer group {group}")) from None
            members = []                             # an unknown group is a group without members
        except Exception:           # noqa: BLE001 - no answer in time: counted as no worker, as before
            members = []
        if not members:
            missing.append(ref)
    return missing
