"""The compose file names real entry points: every service command parses as a scorestream verb."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from scorestream.cli import cli

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "compose" / "compose.yaml").read_text())
WORKER_ENTRYPOINT = ["worker"]      # compose/Dockerfile.worker: ENTRYPOINT ... scorestream.cli worker


def _argv(name: str, service: dict) -> list[str]:
    prefix = WORKER_ENTRYPOINT if "Dockerfile.worker" in str(service.get("build", "")) else []
    return prefix + list(service["command"])


@pytest.mark.parametrize("name", [n for n, s in COMPOSE["services"].items() if "command" in s])
def test_service_command_is_a_verb(name):
    argv = _argv(name, COMPOSE["services"][name])
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_every_model_of_the_policy_has_a_worker_service():
    from rendezvous.policy import Policy
    served = {s["command"][1] for s in COMPOSE["services"].values()
              if "Dockerfile.worker" in str(s.get("build", ""))}
    assert Policy.load().models <= served
