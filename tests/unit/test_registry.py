"""The model registry: the demo family loads, ONNX equals native, bad files are refused."""

import shutil

import numpy as np
import pytest
import yaml

from models.registry import ModelIntegrityError, UnknownModel, list_models, load_model, REGISTRY_DIR
from models.train import FAMILY, MAX_ONNX_DIFF, TEST_ROWS, TEST_SEED, dataset, onnx_scores, to_onnx
from scorestream.errors import UserError

FAMILY_REFS = ["fraud_lr@1", "fraud_xgb@2", "fraud_xgb@3", "fraud_xgb@4"]


@pytest.fixture(scope="module")
def held_out():
    return dataset(TEST_SEED, TEST_ROWS)


@pytest.fixture(scope="module")
def small_train():
    return dataset(7, 20_000)


def test_the_demo_family_is_registered():
    assert set(FAMILY_REFS) <= set(list_models())


@pytest.mark.parametrize("ref", FAMILY_REFS)
def test_committed_model_loads_and_reproduces_its_card_metrics(ref, held_out):
    """The committed ONNX file is the one its model.yaml describes: same held-out AUC."""
    from sklearn.metrics import roc_auc_score

    m = load_model(ref)
    assert (m.ref, m.extractor, m.width) == (ref, "txn@1", 20)
    scores = m.predict(held_out.X)
    assert scores.shape == (len(held_out.y),) and ((scores >= 0) & (scores <= 1)).all()
    card = m.card.training["metrics_held_out"]
    assert roc_auc_score(held_out.y, scores) == pytest.approx(card["auc"], abs=2e-6)
    assert card["auc"] > 0.84 and card["auc"] <= card["oracle_auc"]
    assert m.card.training["onnx_max_abs_diff"] <= MAX_ONNX_DIFF


def test_trees_beat_the_linear_canary():
    auc = {r: load_model(r).card.training["metrics_held_out"]["auc"] for r in FAMILY_REFS}
    assert auc["fraud_xgb@3"] > auc["fraud_xgb@2"] > auc["fraud_lr@1"]


@pytest.mark.parametrize("spec", FAMILY, ids=lambda s: s.ref)
def test_onnx_scores_equal_native_scores(spec, small_train, held_out, tmp_path):
    native = spec.build().fit(small_train.X, small_train.y)
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(native, small_train.X.shape[1], spec.ref))
    rows = held_out.X[:10_000]
    diff = np.abs(onnx_scores(path, rows) - native.predict_proba(rows)[:, 1]).max()
    assert diff <= 1e-5


@pytest.mark.parametrize("spec", FAMILY[:2], ids=lambda s: s.ref)
def test_training_is_reproducible_to_the_byte(spec, small_train):
    a = to_onnx(spec.build().fit(small_train.X, small_train.y), 20, spec.ref)
    b = to_onnx(spec.build().fit(small_train.X, small_train.y), 20, spec.ref)
    assert a == b


@pytest.fixture
def registry_copy(tmp_path):
    shutil.copytree(REGISTRY_DIR, tmp_path / "registry")
    return tmp_path / "registry"


def test_a_model_file_with_another_sha256_is_refused(registry_copy):
    path = registry_copy / "fraud_xgb" / "3" / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256") as info:
        load_model("fraud_xgb@3", registry_copy)
    assert isinstance(info.value, UserError)
    assert load_model("fraud_xgb@2", registry_copy).ref == "fraud_xgb@2"    # the others still load


def test_a_card_whose_features_differ_from_its_extractor_is_refused(registry_copy):
    card_path = registry_copy / "fraud_lr" / "1" / "model.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["input"]["feature_names"][0] = "amount"
    card_path.write_text(yaml.safe_dump(card))
    with pytest.raises(ModelIntegrityError, match="feature names"):
        load_model("fraud_lr@1", registry_copy)


@pytest.mark.parametrize("ref", ["fraud_xgb@9", "nope@1", "fraud_xgb", "fraud_xgb@x"])
def test_unknown_models_are_user_errors(ref):
    with pytest.raises(UnknownModel) as info:
        load_model(ref)
    assert isinstance(info.value, UserError)


def test_unknown_model_lists_what_exists():
    with pytest.raises(UnknownModel, match="fraud_lr@1, fraud_xgb@2, fraud_xgb@3, fraud_xgb@4"):
        load_model("fraud_xgb@9")


def test_predict_refuses_the_wrong_width():
    with pytest.raises(ValueError, match=r"\(n, 20\)"):
        load_model("fraud_lr@1").predict(np.zeros((3, 19), np.float32))
