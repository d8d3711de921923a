"""The containers of the system on a Docker engine (DOCKER_HOST, else the local socket), by their labels.

Every container scorestream starts or composes carries `scorestream.part` (system | worker);
a model worker also carries `scorestream.model` (name@version). `status` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

PART_LABEL = "scorestream.part"
MODEL_LABEL = "scorestream.model"


@dataclass(frozen=True)
class ContainerRow:
    name: str
    state: str
    model: str
    image: str


def engine():
    """A client of the Docker engine the environment names, or None when none answers."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:       # docker.errors.DockerException, or no socket at all: no engine here
        return None


def listed(client, model: str | None = None) -> list:
    """The containers (running or not) with scorestream's labels; only one model's when given."""
    label = f"{MODEL_LABEL}={model}" if model else PART_LABEL
    return client.containers.list(all=True, filters={"label": label})


def rows(client) -> list[ContainerRow]:
    return [ContainerRow(c.name, c.status, c.labels.get(MODEL_LABEL, ""), ",".join(c.image.tags) or c.image.short_id)
            for c in sorted(listed(client), key=lambda c: c.name)]
