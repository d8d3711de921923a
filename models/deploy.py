"""`scorestream deploy` / `undeploy`: a model version's workers as containers, started through the Docker SDK.

A deployment is a data op: the new version's scores flow into scoring.scores and are
ignored until a policy names the model (`scorestream promote`). The model is checked on
the host first (in the registry, sha256 as its card says), before anything starts; its
registry folder is copied into each container, so a version newer than the image runs too.
Where no engine answers, local worker processes are started instead (as `up` does).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from models.registry import load_card, verify
from scorestream import kafka
from scorestream.errors import UserError
from scorestream.containers import MODEL_LABEL, PART_LABEL, engine, listed
from scorestream.process import ManagedProcess
from scorestream.settings import KafkaSettings, StackSettings, _Settings

REGISTRY_IN_IMAGE = "/app/models/registry"


class DeploySettings(_Settings):
    """Where deployed workers run (SCORESTREAM_DEPLOY_*): the compose system's network and broker by default."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_DEPLOY_", frozen=True, extra="ignore")
    image: str = "scorestream-worker"
    network: str = "scorestream_default"
    bootstrap_servers: str = "kafka:9092"


def container_name(ref: str, replica: int) -> str:
    name, version = ref.split("@")
    return f"scorestream-{name.replace('_', '-')}-v{version}-{replica}"


def _model_tar(name: str, directory: Path) -> bytes:
    """The model's registry folder as <name>/<version>/..., readable by the worker's user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def world_readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.isdir() else 0o644
            return info
        tar.add(directory, arcname=f"{name}/{directory.name}", filter=world_readable)
    return buf.getvalue()


def deploy(ref: str, replicas: int = 1, role: str = "candidate", registry_dir: Path | None = None) -> tuple[str, list[str]]:
    """Start `replicas` workers of ref. Returns where ("containers" or "processes") and their names.
    Raises UnknownModel / ModelIntegrityError before anything starts."""
    card, directory = load_card(ref, registry_dir)
    verify(card, directory)
    client = engine()
    if client is None:
        return "processes", _deploy_local(card.ref, replicas, role, registry_dir)
    settings = DeploySettings()
    _check_engine(client, settings)
    model_tar = _model_tar(card.name, directory)
    names = []
    for replica in range(1, replicas + 1):
        name = container_name(card.ref, replica)
        for old in client.containers.list(all=True, filters={"name": f"^{name}$"}):
            if old.status == "running":
                break
            old.remove(force=True)      # a stopped leftover of an earlier deployment
        else:
            container = client.containers.create(
                settings.image, ["--model", card.ref, "--role", role, "--instance-id", kafka.static_member_id(name)],
                name=name, detach=True,
                environment={"SCORESTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers},
                labels={PART_LABEL: "worker", MODEL_LABEL: card.ref}, network=settings.network,
                restart_policy={"Name": "unless-stopped"}, stop_signal="SIGTERM")
            container.put_archive(REGISTRY_IN_IMAGE, model_tar)
            container.start()
        names.append(name)
    return "containers", names


def _check_engine(client, settings: DeploySettings) -> None:
    """The image and the network are there, or a UserError that says what to do (nothing started yet)."""
    import docker.errors

    try:
        client.images.get(settings.image)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {settings.image} not on the engine: run `make images` "
                        "(or set SCORESTREAM_DEPLOY_IMAGE)") from None
    try:
        client.networks.get(settings.network)
    except docker.errors.NotFound:
        raise UserError(f"network {settings.network} not found: start the compose system "
                        "(docker compose -f compose/compose.yaml up -d) or set SCORESTREAM_DEPLOY_NETWORK") from None


def _deploy_local(ref: str, replicas: int, role: str, registry_dir: Path | None) -> list[str]:
    home = StackSettings().home
    env = os.environ | {"SCORESTREAM_BOOTSTRAP_SERVERS": KafkaSettings().bootstrap()}
    extra = ["--registry-dir", str(registry_dir)] if registry_dir else []
    names = []
    for replica in range(1, replicas + 1):
        proc = ManagedProcess(f"score.{ref}" + (f".{replica}" if replica > 1 else ""), home)
        if proc.pid() is None:
            proc.start([sys.executable, "-m", "scorestream.cli", "worker", "--model", ref, "--role", role,
                        "--instance-id", kafka.static_member_id(proc.name), *extra], env=env)
        names.append(proc.name)
    return names


def undeploy(ref: str) -> list[str]:
    """Stop and remove ref's worker containers (SIGTERM drains) and local worker processes."""
    stopped = []
    client = engine()
    if client is not None:
        for container in listed(client, ref):
            container.stop(timeout=30)
            container.remove()
            stopped.append(container.name)
    run = StackSettings().home / "run"
    for pid_file in sorted(run.glob(f"score.{ref}*.pid")) if run.exists() else []:
        proc = ManagedProcess(pid_file.stem, StackSettings().home)
        if proc.stop():
            stopped.append(proc.name)
    return stopped
