"""Verbs of the canary monitor: `canary` (ops) and `alerts` (on-call)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from scorestream.console import out
from scorestream.topics import TopicRegistry


@click.command("canary")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy: its canary, models and SLA. [default: rendezvous/policy.yaml]")
@click.option("--window-s", type=float, default=None, envvar="SCORESTREAM_CANARY_WINDOW_S", show_envvar=True,
              help="Window length in seconds. [default: 60]")
@click.option("--metrics-port", type=int, default=None, help="Serve /metrics here; 0: off.")
def canary_cmd(policy_path: Path | None, window_s: float | None, metrics_port: int | None) -> None:
    """Watch score distributions and answers; alert on scoring.alerts (the canary monitor).

    Per window and model version: a KLL sketch of the scores, compared with the
    canary on the same requests, with the model's own reference, and the canary
    with its reference; answers' rules, latency and late scores as SLO burn
    rates. Every other setting is a SCORESTREAM_CANARY_* variable (docs/canary.md).
    """
    from canary.app import run
    from canary.monitor import CanarySettings
    from models.registry import list_models
    from rendezvous.policy import DEFAULT_PATH, Policy

    known = set(list_models())
    policy = Policy.load(policy_path or DEFAULT_PATH, known_models=known)
    if not policy.canary:
        raise click.ClickException("the policy names no canary model: set `canary:` in it")
    overrides = {k: v for k, v in (("window_s", window_s), ("metrics_port", metrics_port)) if v is not None}
    run(CanarySettings(**overrides), policy, known)


@click.command("alerts")
@click.option("--follow/--no-follow", "keep_following", default=False, help="Keep printing new records.")
@click.option("--firing", is_flag=True, help="Only the alerts firing now (latest record per alert and model).")
def alerts_cmd(keep_following: bool, firing: bool) -> None:
    """Print the canary monitor's alert records (scoring.alerts) as JSON lines, oldest first."""
    from canary.alerts import firing_now, read_alerts

    topic = TopicRegistry.load().name("alerts")
    records = firing_now(topic) if firing else read_alerts(topic, follow=keep_following)
    for alert in records:
        out.print(orjson.dumps(alert).decode(), highlight=False, soft_wrap=True)
