"""The interface every model runtime implements (MLServer style: load, predict, unload).

The worker loop and the registry only see this class, so swapping ONNX for
another runtime is a new module here and a `backend:` line in model.yaml.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class ModelBackend(ABC):
    """One loaded model file. `predict` takes (n, width) float32 and returns (n,) scores."""

    kind: ClassVar[str]                      # the `backend:` value in model.yaml
    _kinds: ClassVar[dict[str, type["ModelBackend"]]] = {}

    def __init__(self, path: Path, options: dict[str, Any]):
        self.path, self.options = path, options

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        ModelBackend._kinds[cls.kind] = cls

    @abstractmethod
    def load(self) -> None:
        """Make predict() ready (open sessions, warm up). Called once before predict."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores of the rows of X; may raise on input the runtime cannot take."""

    def unload(self) -> None:
        """Release what load() took."""

    @classmethod
    def for_kind(cls, kind: str) -> type["ModelBackend"]:
        from models import onnx_backend  # noqa: F401  (registers itself)

        try:
            return cls._kinds[kind]
        except KeyError:
            raise ValueError(f"no model backend {kind!r} (known: {', '.join(sorted(cls._kinds))})") from None
