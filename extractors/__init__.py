"""Versioned, pure feature extractors: a raw request payload -> a fixed-width float32 vector.

An extractor is named `name@version`. A version never changes once models
were trained on it: a new feature, a new scaling, a new default means a new
version, so a model and the features it is fed always agree. The same code
runs live (the extract job) and in replay, and does no I/O.

>>> ex = get_extractor("txn@1")
>>> ex.ref, ex.width == len(ex.feature_names)
('txn@1', True)
>>> get_extractor("txn@9")
Traceback (most recent call last):
...
extractors.UnknownExtractor: no extractor 'txn@9' (known: txn@1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scorestream.errors import UserError


class ExtractError(ValueError):
    """A payload that cannot be turned into features; the message names the field."""

    def __init__(self, field: str, reason: str):
        self.field = field
        super().__init__(f"payload field {field!r} {reason}")


class UnknownExtractor(UserError):
    """A `name@version` no extractor answers to."""


class Extractor:
    """Base of every extractor: `ref`, `feature_names`, `width` and a pure `extract()`.

    Subclasses set `name`, `version`, `feature_names` and implement `extract`,
    which returns a float32 array of shape (width,) or raises ExtractError.
    """

    name: str
    version: int
    feature_names: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def extract(self, payload: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def refusal(self, payload: Any) -> tuple[str, str] | None:
        """(field, reason), named as a rejection names them, if this extractor refuses the payload; else None."""
        try:
            self.extract(payload)
        except ExtractError as exc:
            return (f"payload.{exc.field}" if exc.field and exc.field != "payload" else "payload", str(exc))
        return None

    def extract_many(self, payloads: list[dict[str, Any]]) -> np.ndarray:
        """Shape (n, width); raises on the first bad payload (training data is clean by construction)."""
        out = np.empty((len(payloads), self.width), dtype=np.float32)
        for i, p in enumerate(payloads):
            out[i] = self.extract(p)
        return out

    def __repr__(self) -> str:
        return f"<Extractor {self.ref} width={self.width}>"


def _registry() -> dict[str, Extractor]:
    from extractors.txn import TxnV1   # here, not at the top: txn imports this module

    return {e.ref: e for e in (TxnV1(),)}


_EXTRACTORS: dict[str, Extractor] = {}


def get_extractor(ref: str) -> Extractor:
    """The extractor named `ref` ("txn@1"); UnknownExtractor lists the known ones."""
    if not _EXTRACTORS:
        _EXTRACTORS.update(_registry())
    try:
        return _EXTRACTORS[ref]
    except KeyError:
        raise UnknownExtractor(f"no extractor {ref!r} (known: {', '.join(sorted(_EXTRACTORS))})") from None


def list_extractors() -> list[str]:
    if not _EXTRACTORS:
        _EXTRACTORS.update(_registry())
    return sorted(_EXTRACTORS)
