"""`scorestream worker`: one model version, scoring every request of scoring.features."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from models.registry import load_model
from models.worker import DeliveryFailed, WorkerSettings, run, stage_id
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
    except DeliveryFailed as exc:
        logging.getLogger(__name__).error("%s", exc)
        raise SystemExit(2) from None
    click.echo(f"{stage_id(model.ref)}: {stats.records_in} in, {stats.scored} scored, "
               f"{stats.dead_lettered} dead-lettered in {stats.batches} batches")
