"""Verbs of the rendezvous: `promote` (ops) and `results` (producers)."""

from __future__ import annotations

import time
from pathlib import Path

import click
import orjson

from rendezvous.policy import Policy
from scorestream import kafka
from scorestream.client import assigned_consumer, follow
from scorestream.console import out
from scorestream.contract import Control
from scorestream.topics import TopicRegistry


@click.command()
@click.argument("policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def promote(policy_file: Path) -> None:
    """Put a rendezvous policy in force, without restarting anything.

    The file is validated against the model registry first (an invalid one is
    refused with its line and the reason), then published to scoring.control,
    from where the running rendezvous job picks it up.
    """
    from models.registry import list_models

    policy = Policy.load(policy_file, known_models=set(list_models()))
    producer = kafka.producer()
    control = Control("policy", "rendezvous", policy.to_dict(), int(time.time() * 1000))
    kafka.produce(producer, TopicRegistry.load().name("control"), control.to_record())
    if producer.flush(30):
        raise click.ClickException("the policy was not acknowledged by the broker; is the stack up?")
    out.print(f"policy version {policy.version} published: arms {', '.join(a.model for a in policy.arms)}; "
              f"canary {policy.canary}; sla {policy.sla_ms:g} ms")


@click.command()
@click.option("--follow/--no-follow", "keep_following", default=True, help="Keep printing new results.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest result kept, not at the newest.")
def results(keep_following: bool, from_beginning: bool) -> None:
    """Print answers of scoring.results as JSON lines, as they arrive."""
    topic = TopicRegistry.load().name("results")
    consumer = assigned_consumer(topic, from_beginning=from_beginning)
    for result in follow(consumer, idle_s=None if keep_following else 2.0):
        out.print(orjson.dumps(result).decode(), highlight=False, soft_wrap=True)
