"""`deploy` checks the model before it asks any engine: unknown or tampered models never reach Docker."""

import shutil
from pathlib import Path

import pytest

import models.deploy as deploy
from models.registry import ModelIntegrityError, UnknownModel

REGISTRY = Path(__file__).parents[2] / "models" / "registry"


@pytest.fixture
def no_engine_call(monkeypatch):
    monkeypatch.setattr(deploy, "engine", lambda: pytest.fail("the engine was asked before the model was checked"))


def test_unknown_model_is_refused(no_engine_call):
    with pytest.raises(UnknownModel, match="no model 'fraud_xgb@99'"):
        deploy.deploy("fraud_xgb@99")


def test_model_failing_its_checksum_is_refused(no_engine_call, tmp_path):
    shutil.copytree(REGISTRY, tmp_path / "registry")
    (tmp_path / "registry" / "fraud_xgb" / "3" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        deploy.deploy("fraud_xgb@3", registry_dir=tmp_path / "registry")


def test_container_names_are_valid_docker_names():
    assert deploy.container_name("fraud_xgb@5", 2) == "scorestream-fraud-xgb-v5-2"
