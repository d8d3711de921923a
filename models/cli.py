"""`scorestream worker`: one model version, scoring every request of scoring.features."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from models.registry import load_model
from models.worker import ConsumerFailed, DeliveryFailed, WorkerSettings, run, stage_id
from scorestream.metrics import serve

_D = {name: f.default for name, f in WorkerSettings.model_fields.items()}


@click.command("worker")
@click.option("--model", "model_ref", required=True, help="Model to serve, name@version (e.g. fraud_xgb@3).")
@click.option("--role", type=click.Choice(["candidate", "canary"]), default=_D["role"],
              help="How the rendezvous treats its scores; annotated on every score.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=_D["batch_size"],
              help="Most records per micro-batch.")
@click.option("--batch-ms", type=click.FloatRange(0.1, 10_000), default=_D["batch_ms"],
              help="Longest wait for a first record, in ms; a batch is that record and what else is already fetched.")
@click.option("--fetch-wait-ms", type=click.IntRange(0, 500), default=_D["fetch_wait_ms"],
              help="How long the broker may hold a fetch to gather features (fewer, fuller batches: fewer fetch and "
                   "produce requests per request); 0: every record wakes the worker.")
@click.option("--scores-partitioning", type=click.Choice(["batch", "key"]), default=_D["scores_partitioning"],
              help="batch: the scores of a micro-batch go to one partition of scoring.scores, taking turns (one "
                   "produce request per batch); key: each to its request id's partition. The key is the request "
                   "id either way.")
@click.option("--metrics-port", type=int, default=_D["metrics_port"], help="Serve /metrics here; 0: off.")
@click.option("--registry-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Model registry folder. [default: models/registry]")
@click.option("--session-timeout-ms", type=int, default=_D["session_timeout_ms"],
              help="How soon a dead replica's partitions move to the others.")
@click.option("--instance-id", default=_D["instance_id"],
              help="Static group membership id (e.g. the container name): a restarted replica gets its "
                   "partitions back at once.")
def worker(model_ref: str, **options) -> None:
    """Score every request of scoring.features with one model version.

    Consumes in group scorestream.score.NAME@VERSION (replicas of a version
    share partitions, every version sees every request), writes one annotated
    score per request to scoring.scores, bad records to scoring.deadletter.
    Offsets are committed after the broker acknowledged the outputs: a killed
    worker loses nothing and may score some requests twice. SIGTERM drains.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = WorkerSettings(model=model_ref, **options)
    model = load_model(model_ref, settings.registry_dir)        # refuses a file whose sha256 differs
    serve(settings.metrics_port)
    try:
        stats = run(settings, model)
    except (DeliveryFailed, ConsumerFailed) as exc:
        logging.getLogger(__name__).error("%s", exc)
        raise SystemExit(2) from None
    click.echo(f"{stage_id(model.ref)}: {stats.records_in} in, {stats.scored} scored, "
               f"{stats.dead_lettered} dead-lettered in {stats.batches} batches")


@click.command()
@click.argument("model_ref", metavar="NAME@VERSION")
@click.option("--replicas", type=click.IntRange(1, 64), default=1, help="Workers of this version (they share partitions).")
@click.option("--role", type=click.Choice(["candidate", "canary"]), default="candidate", help="Annotated on its scores.")
@click.option("--registry-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Model registry folder. [default: models/registry]")
def deploy(model_ref: str, replicas: int, role: str, registry_dir: Path | None) -> None:
    """Start a model version's workers as containers on the Docker engine (DOCKER_HOST).

    The model must be in the registry and its file must match the card's sha256:
    otherwise nothing starts. Its scores go to scoring.scores and are ignored until
    a policy names it (`scorestream promote`). The containers join the compose
    system's network (SCORESTREAM_DEPLOY_NETWORK, SCORESTREAM_DEPLOY_IMAGE). With no
    engine reachable, local worker processes are started instead.
    """
    from models.deploy import deploy as start
    from scorestream.console import out

    where, names = start(model_ref, replicas, role, registry_dir)
    if where == "processes":
        out.print("no Docker engine reachable (DOCKER_HOST or the local socket): started local worker processes")
    out.print(f"deployed {model_ref} as {where}: {', '.join(names)}")


@click.command()
@click.argument("model_ref", metavar="NAME@VERSION")
def undeploy(model_ref: str) -> None:
    """Stop and remove a model version's workers (containers and local processes). SIGTERM drains."""
    from models.deploy import undeploy as stop
    from scorestream.console import out

    stopped = stop(model_ref)
    out.print(f"stopped: {', '.join(stopped)}" if stopped else f"no worker of {model_ref} was running")
