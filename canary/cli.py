"""Verbs of the canary monitor: `canary` (ops) and `alerts` (on-call)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from scorestream.console import out
from scorestream.topics import TopicRegistry


@click.group("canary", invoke_without_command=True)
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rendezvous policy: its canary, models and SLA. [default: rendezvous/policy.yaml]")
@click.option("--window-s", type=float, default=None, envvar="SCORESTREAM_CANARY_WINDOW_S", show_envvar=True,
              help="Window length in seconds. [default: 60]")
@click.option("--metrics-port", type=int, default=None, help="Serve /metrics here; 0: off.")
@click.pass_context
def canary_cmd(ctx: click.Context, policy_path: Path | None, window_s: float | None, metrics_port: int | None) -> None:
    """Watch score distributions and answers; alert on scoring.alerts (the canary monitor).

    Per window and model version: a KLL sketch of the scores, compared with the
    canary on the same requests, with the model's own reference, and the canary
    with its reference; answers' rules, latency and late scores as SLO burn
    rates. Every other setting is a SCORESTREAM_CANARY_* variable (docs/canary.md).
    `scorestream canary reference` builds the references from archived traffic instead.
    """
    from canary.monitor import CanarySettings
    from models.registry import list_models
    from rendezvous.policy import DEFAULT_PATH, Policy

    known = set(list_models())
    policy = Policy.load(policy_path or DEFAULT_PATH, known_models=known)
    if not policy.canary:
        raise click.ClickException("the policy names no canary model: set `canary:` in it")
    overrides = {k: v for k, v in (("window_s", window_s), ("metrics_port", metrics_port)) if v is not None}
    settings = CanarySettings(**overrides)
    if ctx.invoked_subcommand:
        ctx.obj = (settings, policy, known)
        return
    from canary.app import run
    run(settings, policy, known)


@canary_cmd.command("reference")
@click.option("--from", "start", required=True, help="Start of the archived range (ISO time, or epoch ms).")
@click.option("--to", "end", required=True, help="End of the range, excluded.")
@click.pass_obj
def reference_cmd(obj, start: str, end: str) -> None:
    """Pin the references from archived traffic (through the decoy's replay), instead of the first windows.

    Every model the policy names scores the range; it is cut into the monitor's windows and each
    model's scores (and deltas to the canary) get a reference and a threshold from those windows.
    Replaces the monitor's references file; restart the monitor (`down`, `up`) to use it.
    """
    from canary.app import references_file
    from canary.reference import from_archive
    from canary.stats import save_references
    from decoy.timerange import TimeRange

    settings, policy, _ = obj
    references = from_archive(TimeRange.parse(start, end), sorted(policy.models), policy.canary, settings)
    if not references:
        raise click.ClickException(f"fewer than two windows of {settings.window_s:g} s with at least "
                                   f"{settings.min_count} archived requests in that range: no reference")
    path = references_file(settings)
    save_references(references, path)
    for name, ref in sorted(references.items()):
        out.print(f"{name}: {ref.sketch.n} values in {len(ref.spread)} windows, threshold {ref.threshold:.3f}")
    out.print(f"wrote {path}; restart the monitor to use it")


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
