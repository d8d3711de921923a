"""Build the demo model family into models/registry, deterministically.

    python -m models.train                      # every model of FAMILY
    python -m models.train --only fraud_lr@1    # one of them
    python -m models.train --only fraud_xgb@5   # the model of the new regime, with its comparison


Data comes from scorestream.synthetic.TransactionGenerator (known ground
truth), features from extractor txn@1, so the metrics of each model.yaml can
be compared with the oracle (the true fraud probability). Each model is
exported to ONNX and refused if ONNX and the native model differ by more than
MAX_ONNX_DIFF on the held-out rows. Same versions of the libraries, same
bytes: the sha256 in model.yaml is reproducible.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from extractors import get_extractor
from models.onnx_backend import OnnxBackend
from models.registry import CARD, REGISTRY_DIR, sha256_of
from scorestream.synthetic import TransactionGenerator

EXTRACTOR = "txn@1"
TRAIN_SEED, TRAIN_ROWS = 20240101, 200_000
TEST_SEED, TEST_ROWS = 20240102, 50_000      # held out: another seed, never seen in training
MAX_ONNX_DIFF = 1e-5
SCORE_MEANING = "probability that the transaction is fraud (label 1 of the synthetic ground truth), in [0, 1]"


@dataclass(frozen=True)
class Spec:
    name: str
    version: int
    description: str
    params: dict[str, Any]
    make: Callable[..., Any]
    uses: dict[str, Any] = field(default_factory=dict)    # fixed params not worth a line in model.yaml
    regime: str = "old"                                    # the synthetic world it learns (scorestream.synthetic)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def build(self) -> Any:
        return self.make(**self.params, **self.uses)


def _logistic(C: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


_XGB = {"tree_method": "hist", "n_jobs": 1, "random_state": 0, "eval_metric": "logloss"}

FAMILY = (
    Spec("fraud_lr", 1, "Logistic regression on standardised txn@1 features: simple, stable, the canary.",
         {"C": 1.0}, _logistic),
    Spec("fraud_xgb", 2, "Gradient-boosted trees, shallow: 100 trees of depth 3.",
         {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}, XGBClassifier, _XGB),
    Spec("fraud_xgb", 3, "Gradient-boosted trees, more and deeper: 300 trees of depth 4, slower learning rate.",
         {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05, "min_child_weight": 20}, XGBClassifier, _XGB),
    Spec("fraud_xgb", 4, "Gradient-boosted trees, deep and few: 80 trees of depth 6, the next candidate to try.",
         {"n_estimators": 80, "max_depth": 6, "learning_rate": 0.1, "min_child_weight": 50}, XGBClassifier, _XGB),
    Spec("fraud_xgb", 5, "fraud_xgb@3's trees trained on the new regime, where evening travel turned risky.",
         {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05, "min_child_weight": 20}, XGBClassifier, _XGB,
         regime="new"),
)


@dataclass(frozen=True)
class Data:
    X: np.ndarray          # (n, width) float32
    y: np.ndarray          # labels
    truth: np.ndarray      # the generator's true fraud probability
    seed: int
    regime: str = "old"


def dataset(seed: int, rows: int, regime: str = "old") -> Data:
    samples = TransactionGenerator(seed, regime).batch(rows)
    X = get_extractor(EXTRACTOR).extract_many([s.payload for s in samples])
    return Data(X, np.array([s.label for s in samples]), np.array([s.fraud_probability for s in samples]), seed,
                regime)


def to_onnx(native: Any, width: int, graph_name: str) -> bytes:
    """ONNX bytes with one float input `features` and an output `probabilities` (n, 2).

    The converters name the graph with a random uuid; a fixed name keeps the
    bytes, hence the sha256 in model.yaml, reproducible.
    """
    if isinstance(native, XGBClassifier):
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_xgboost(native, initial_types=[("features", FloatTensorType([None, width]))])
    else:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        onx = convert_sklearn(native, initial_types=[("features", FloatTensorType([None, width]))],
                              options={"zipmap": False})
    onx.graph.name = graph_name
    return onx.SerializeToString()


def onnx_scores(path: Path, X: np.ndarray) -> np.ndarray:
    """Scores through the backend the workers run, not a second code path."""
    backend = OnnxBackend(path, {"output": "probabilities", "column": 1})
    backend.load()
    return backend.predict(X)


def metrics(y: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"auc": round(float(roc_auc_score(y, scores)), 6),
            "log_loss": round(float(log_loss(y, np.clip(scores, 1e-7, 1 - 1e-7))), 6),
            "brier": round(float(brier_score_loss(y, scores)), 6),
            "oracle_auc": round(float(roc_auc_score(y, truth)), 6),   # the best any model can do here
            "fraud_rate": round(float(y.mean()), 6)}


def build(spec: Spec, train: Data, test: Data, out_dir: Path) -> dict[str, Any]:
    """Fit, export, check ONNX against native, write model.onnx and model.yaml; returns the card."""
    native = spec.build().fit(train.X, train.y)
    directory = out_dir / spec.name / str(spec.version)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    path.write_bytes(to_onnx(native, train.X.shape[1], spec.ref))
    served = onnx_scores(path, test.X)
    diff = float(np.abs(served - native.predict_proba(test.X)[:, 1]).max())
    if diff > MAX_ONNX_DIFF:
        raise RuntimeError(f"{spec.ref}: ONNX differs from the native model by {diff:.2e} > {MAX_ONNX_DIFF}")
    extractor = get_extractor(EXTRACTOR)
    card = {
        "name": spec.name, "version": spec.version, "description": spec.description,
        "score": SCORE_MEANING, "extractor": EXTRACTOR,
        "input": {"width": extractor.width, "feature_names": list(extractor.feature_names)},
        "backend": {"kind": "onnx", "file": path.name, "sha256": sha256_of(path),
                    "options": {"output": "probabilities", "column": 1}},
        "training": {
            "script": "models/train.py", "algorithm": type(native).__name__ if not isinstance(native, Pipeline)
            else " -> ".join(type(s).__name__ for _, s in native.steps),
            "params": spec.params | spec.uses,
            "data": {"generator": "scorestream.synthetic.TransactionGenerator", "regime": train.regime,
                     "train_seed": train.seed, "train_rows": len(train.y), "test_seed": test.seed,
                     "test_rows": len(test.y)},
            "metrics_held_out": metrics(test.y, served, test.truth),
            "onnx_max_abs_diff": float(f"{diff:.3e}"),
            "libraries": _libraries(),
        },
    }
    (directory / CARD).write_text(yaml.safe_dump(card, sort_keys=False, width=110))
    if spec.regime != "old":
        card["training"]["compared_held_out"] = compare(out_dir, test.seed)
        (directory / CARD).write_text(yaml.safe_dump(card, sort_keys=False, width=110))
    return card


def compare(out_dir: Path, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Every model of the registry (this one included) on the held-out rows of both regimes: where the new
    model is better, and that it is no better where the world did not change."""
    from scorestream.synthetic import REGIMES

    refs = sorted(p.parent for p in out_dir.glob(f"*/*/{CARD}"))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for regime in REGIMES:
        data = dataset(seed, TEST_ROWS, regime)
        out[regime] = {}
        for directory in refs:
            scores = onnx_scores(directory / "model.onnx", data.X)
            m = metrics(data.y, scores, data.truth)
            out[regime][f"{directory.parent.name}@{directory.name}"] = {k: m[k] for k in ("auc", "log_loss", "brier")}
    return out


def _libraries() -> dict[str, str]:
    """Versions that decide the bytes of model.onnx (modules, not distributions: xgboost ships as xgboost-cpu)."""
    names = ("sklearn", "xgboost", "skl2onnx", "onnxmltools", "onnx", "onnxruntime")
    return {n: importlib.import_module(n).__version__ for n in names}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REGISTRY_DIR, help="registry folder [models/registry]")
    ap.add_argument("--only", action="append", help="name@version to build (repeatable); default: all")
    ap.add_argument("--train-rows", type=int, default=TRAIN_ROWS)
    args = ap.parse_args(argv)
    specs = [s for s in FAMILY if not args.only or s.ref in args.only]
    data: dict[str, tuple[Data, Data]] = {}
    for spec in specs:
        if spec.regime not in data:
            data[spec.regime] = dataset(TRAIN_SEED, args.train_rows, spec.regime), dataset(TEST_SEED, TEST_ROWS,
                                                                                             spec.regime)
        card = build(spec, *data[spec.regime], args.out)
        m = card["training"]["metrics_held_out"]
        print(f"{spec.ref}: auc {m['auc']:.4f} (oracle {m['oracle_auc']:.4f}) log_loss {m['log_loss']:.4f} "
              f"onnx-vs-native {card['training']['onnx_max_abs_diff']:.1e} sha256 {card['backend']['sha256'][:12]}")


if __name__ == "__main__":
    main()
