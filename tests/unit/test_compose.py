"""The compose file names real entry points, and the images' requirement files pin what pyproject.toml pins.
(tests/containers runs the compose system itself on a Docker engine.)"""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from scorestream.cli import cli

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
WORKER_ENTRYPOINT = ["worker"]      # compose/Dockerfile.worker: ENTRYPOINT ... scorestream.cli worker


def _is_worker(service: dict) -> bool:
    return service.get("image") == "scorestream-worker"


@pytest.mark.parametrize("name", [n for n, s in COMPOSE["services"].items() if "command" in s])
def test_service_command_is_a_verb(name):
    service = COMPOSE["services"][name]
    argv = (WORKER_ENTRYPOINT if _is_worker(service) else []) + list(service["command"])
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_every_model_of_the_policy_has_a_worker_service():
    from rendezvous.policy import Policy
    served = {s["command"][1] for s in COMPOSE["services"].values() if _is_worker(s)}
    assert Policy.load().models <= served


@pytest.mark.parametrize("image", ["worker", "jobs"])
def test_image_requirements_pin_what_pyproject_pins(image):
    pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups()
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    lines = [ln.strip() for ln in (ROOT / "compose" / f"requirements-{image}.txt").read_text().splitlines()]
    for line in (ln for ln in lines if ln and not ln.startswith("#")):
        name, version = line.split("==")
        assert pins.get(name) == version, f"{line}: pyproject.toml pins {name}=={pins.get(name)}"


def test_worker_image_has_no_flink_and_no_training_libraries():
    lines = (ROOT / "compose" / "requirements-worker.txt").read_text().lower()
    assert not any(lib in lines for lib in ("apache-flink", "xgboost", "scikit-learn", "pyarrow"))
