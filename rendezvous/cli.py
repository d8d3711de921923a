"""Verbs of the rendezvous: `policy` and `promote` (ops), `results` (producers)."""

from __future__ import annotations

import time
from pathlib import Path

import click
import orjson
import yaml

from rendezvous.policy import Policy
from scorestream.client import assigned_consumer, follow
from scorestream.console import out
from scorestream.errors import UserError
from scorestream.topics import TopicRegistry


@click.command()
@click.argument("policy_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preview", is_flag=True, help="Change nothing: show the diff against the policy in force and what "
              "the new policy would have answered over the last --minutes of scores and results.")
@click.option("--minutes", type=float, default=5.0, help="How far back --preview looks.")
@click.option("--undo", is_flag=True, help="Put back the policy the one in force replaced.")
@click.option("--force", is_flag=True, help="Promote even when a model the policy names has no running worker.")
def promote(policy_file: Path | None, preview: bool, minutes: float, undo: bool, force: bool) -> None:
    """Put a rendezvous policy in force, without restarting anything.

    The file is validated against the model registry first (an invalid one is
    refused with its line and the reason) and refused when a model it names
    has no running worker (its consumer group has no member); then it is
    published to scoring.control, from where the running rendezvous job picks
    it up. --preview shows what would change, and changes nothing. --undo puts
    back the previous policy.
    """
    from models.registry import list_models
    from rendezvous import control

    current, _ = control.in_force()
    if undo:
        if policy_file or preview:
            raise UserError("--undo takes no POLICY_FILE and no --preview")
        if not current or "previous" not in current:
            raise UserError("nothing to undo: the policy in force replaced no promoted policy")
        policy = Policy.from_dict(current["previous"], known_models=set(list_models()))
    elif policy_file is None:
        raise UserError("give a POLICY_FILE (or --undo)")
    else:
        policy = Policy.load(policy_file, known_models=set(list_models()))
    missing = control.without_workers(policy)
    if missing and (preview or not force):
        raise UserError(f"no running worker for {', '.join(missing)}: start one (`scorestream worker --model "
                        f"{missing[0]}`) first" + ("" if preview else ", or promote with --force"))
    if preview:
        _show_preview(policy, current, minutes)
        return
    control.publish(policy, current)
    out.print(f"policy version {policy.version} published{' (undo)' if undo else ''}: arms "
              f"{', '.join(a.model for a in policy.arms)}; canary {policy.canary}; sla {policy.sla_ms:g} ms")


def _show_preview(policy: Policy, current: dict | None, minutes: float) -> None:
    import difflib

    from rich.table import Table

    from rendezvous.preview import preview

    def lines(doc: dict | None) -> list[str]:
        if doc is None:
            return []
        doc = {k: v for k, v in doc.items() if k != "previous"}
        return yaml.safe_dump(Policy.from_dict(doc).to_dict(), sort_keys=False).splitlines()

    diff = list(difflib.unified_diff(lines(current), lines(policy.to_dict()), "in force", "new", lineterm=""))
    out.print("\n".join(diff) if diff else "no change against the policy in force", highlight=False, soft_wrap=True)
    result = preview(policy, minutes)
    served, would = result.served, result.would
    if not served.count:
        out.print(f"no answers in the last {minutes:g} minutes: nothing to compare")
        return
    table = Table("", "served", "new policy", title=f"the last {minutes:g} minutes: {served.count} answers "
                  f"(posteriors of {result.outcomes_learned or 0} outcomes)")
    for model in sorted(set(served.by_model) | set(would.by_model)):
        table.add_row(f"model {model}", f"{served.share(served.by_model, model):.1%}",
                      f"{would.share(would.by_model, model):.1%}")
    for rule in sorted(set(served.by_rule) | set(would.by_rule)):
        table.add_row(f"rule {rule}", f"{served.share(served.by_rule, rule):.1%}",
                      f"{would.share(would.by_rule, rule):.1%}")
    table.add_row("latency p50 / p99 ms", f"{served.latency(0.5):.1f} / {served.latency(0.99):.1f}",
                  f"{would.latency(0.5):.1f} / {would.latency(0.99):.1f} (without the last hop)")
    table.add_row("mean |canary delta|", f"{served.mean_abs_canary_delta:.4f}", f"{would.mean_abs_canary_delta:.4f}")
    out.print(table)


@click.command("policy")
def policy_cmd() -> None:
    """Print the rendezvous policy in force and its version."""
    from rendezvous import control
    from rendezvous.policy import DEFAULT_PATH

    body, ts = control.in_force()
    if body is None:
        policy = Policy.load(DEFAULT_PATH)
        out.print(f"# no policy promoted: the rendezvous runs the file it was started with "
                  f"(by default {DEFAULT_PATH}, version {policy.version})", highlight=False, soft_wrap=True)
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts / 1000))
    doc = {k: v for k, v in body.items() if k != "previous"}
    undo = f"; `promote --undo` puts back version {body['previous'].get('version')}" if "previous" in body else ""
    out.print(f"# version {doc.get('version')}, promoted {when}{undo}", highlight=False, soft_wrap=True)
    out.print(yaml.safe_dump(doc, sort_keys=False).rstrip(), highlight=False, soft_wrap=True)


@click.command()
@click.option("--follow/--no-follow", "keep_following", default=True, help="Keep printing new results.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest result kept, not at the newest.")
def results(keep_following: bool, from_beginning: bool) -> None:
    """Print answers of scoring.results as JSON lines, as they arrive."""
    topic = TopicRegistry.load().name("results")
    consumer = assigned_consumer(topic, from_beginning=from_beginning)
    for result in follow(consumer, idle_s=None if keep_following else 2.0):
        out.print(orjson.dumps(result).decode(), highlight=False, soft_wrap=True)
