"""The model registry: `registry/<name>/<version>/model.yaml` plus the model file it names.

`load_model("fraud_xgb@3")` refuses a file whose sha256 differs from the
card, a card whose inputs disagree with its extractor, and names it does not
know (listing the ones it does).

>>> "fraud_lr@1" in list_models()
True
>>> m = load_model("fraud_lr@1")
>>> m.ref, m.extractor, m.predict(np.zeros((2, len(m.feature_names)), np.float32)).shape
('fraud_lr@1', 'txn@1', (2,))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from extractors import UnknownExtractor, get_extractor
from models.backend import ModelBackend
from scorestream.errors import UserError

REGISTRY_DIR = Path(__file__).resolve().parent / "registry"
CARD = "model.yaml"


class UnknownModel(UserError):
    """No such name@version in the registry."""


class ModelIntegrityError(UserError):
    """The model file or its card cannot be trusted: wrong sha256, inputs that disagree."""


def parse_ref(ref: str) -> tuple[str, int]:
    """("fraud_xgb", 3) from "fraud_xgb@3"."""
    name, sep, version = ref.partition("@")
    if not sep or not name or not version.isdigit():
        raise UnknownModel(f"{ref!r} is not a model reference: write name@version, e.g. fraud_xgb@3")
    return name, int(version)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ModelCard:
    """model.yaml: who the model is, what it eats, what its score means, how it was made."""

    name: str
    version: int
    extractor: str
    feature_names: tuple[str, ...]
    score: str                      # what the score means
    backend: str
    file: str
    sha256: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @classmethod
    def read(cls, path: Path) -> "ModelCard":
        doc = yaml.safe_load(path.read_text())
        try:
            inputs = doc["input"]
            if int(inputs["width"]) != len(inputs["feature_names"]):
                raise ModelIntegrityError(f"{path}: input width {inputs['width']} but "
                                          f"{len(inputs['feature_names'])} feature names")
            return cls(name=doc["name"], version=int(doc["version"]), extractor=doc["extractor"],
                       feature_names=tuple(inputs["feature_names"]), score=doc["score"],
                       backend=doc["backend"]["kind"], file=doc["backend"]["file"],
                       sha256=doc["backend"]["sha256"], backend_options=doc["backend"].get("options") or {},
                       training=doc.get("training") or {}, description=doc.get("description", ""))
        except (KeyError, TypeError) as exc:
            raise ModelIntegrityError(f"{path}: missing or malformed {exc}") from None


class LoadedModel:
    """A card and its backend, loaded and checked; `predict` gives the probability of fraud."""

    def __init__(self, card: ModelCard, backend: ModelBackend, directory: Path):
        self.card, self.backend, self.directory = card, backend, directory
        self.name, self.version, self.ref = card.name, card.version, card.ref
        self.extractor, self.feature_names, self.width = card.extractor, card.feature_names, card.width

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X of shape (n, width), float32 -> scores of shape (n,), float64."""
        if X.ndim != 2 or X.shape[1] != self.width:
            raise ValueError(f"{self.ref} takes shape (n, {self.width}), got {X.shape}")
        return self.backend.predict(np.ascontiguousarray(X, dtype=np.float32))

    def __repr__(self) -> str:
        return f"<LoadedModel {self.ref} {self.card.backend} extractor={self.extractor}>"


def list_models(registry_dir: Path | None = None) -> list[str]:
    root = registry_dir or REGISTRY_DIR
    refs = [(p.parent.parent.name, int(p.parent.name)) for p in root.glob(f"*/*/{CARD}") if p.parent.name.isdigit()]
    return [f"{n}@{v}" for n, v in sorted(refs)]


def load_card(ref: str, registry_dir: Path | None = None) -> tuple[ModelCard, Path]:
    root = registry_dir or REGISTRY_DIR
    name, version = parse_ref(ref)
    directory = root / name / str(version)
    if not (directory / CARD).exists():
        known = ", ".join(list_models(root)) or "none"
        raise UnknownModel(f"no model {ref!r} in {root} (known: {known})")
    card = ModelCard.read(directory / CARD)
    if (card.name, card.version) != (name, version):
        raise ModelIntegrityError(f"{directory / CARD} describes {card.ref}, not {ref}")
    return card, directory


def verify(card: ModelCard, directory: Path) -> Path:
    """The model file's path, once its sha256 and its inputs match the card and the extractor."""
    path = directory / card.file
    if not path.exists():
        raise ModelIntegrityError(f"{card.ref}: model file {path} is missing")
    actual = sha256_of(path)
    if actual != card.sha256:
        raise ModelIntegrityError(f"{card.ref}: {path} has sha256 {actual}, {CARD} says {card.sha256}; "
                                  "refusing a model file that is not the one described")
    try:
        extractor = get_extractor(card.extractor)
    except UnknownExtractor as exc:
        raise ModelIntegrityError(f"{card.ref}: {exc}") from None
    if extractor.feature_names != card.feature_names:
        raise ModelIntegrityError(f"{card.ref}: feature names differ from those of {card.extractor}")
    return path


def load_model(ref: str, registry_dir: Path | None = None) -> LoadedModel:
    """The model `name@version`, checked and ready to predict."""
    card, directory = load_card(ref, registry_dir)
    path = verify(card, directory)
    try:
        backend = ModelBackend.for_kind(card.backend)(path, card.backend_options)
    except ValueError as exc:
        raise ModelIntegrityError(f"{card.ref}: {exc}") from None
    backend.load()
    return LoadedModel(card, backend, directory)
