"""Scoring replayed requests with the live code: the registry's models and their extractors.

Models are loaded (and so refused when unknown) before any record is read.
Each distinct extractor runs once per request; a payload any of them refuses
is skipped as malformed, since no live model could have scored it either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extractors import ExtractError, get_extractor
from models.registry import load_model
from scorestream.contract import Request


@dataclass
class Scored:
    kept: list[int]                      # indices of the requests that were scored, in order
    scores: dict[str, np.ndarray]        # model ref -> (len(kept),) scores
    refused: list[ExtractError]          # why the other requests could not be scored


class Scorer:
    def __init__(self, model_refs: tuple[str, ...]):
        self.models = [load_model(ref) for ref in dict.fromkeys(model_refs)]   # raises UnknownModel first
        self.extractors = {ref: get_extractor(ref) for ref in dict.fromkeys(m.extractor for m in self.models)}

    @property
    def refs(self) -> list[str]:
        return [m.ref for m in self.models]

    @property
    def extractor_label(self) -> str | None:
        """The extractor version(s) written with each row."""
        return ",".join(self.extractors) or None

    def score(self, requests: list[Request]) -> Scored:
        features = {ref: np.empty((len(requests), e.width), np.float32) for ref, e in self.extractors.items()}
        kept, refused = [], []
        for i, request in enumerate(requests):
            try:
                for ref, extractor in self.extractors.items():
                    features[ref][len(kept)] = extractor.extract(request.payload)
            except ExtractError as exc:
                refused.append(exc)
                continue
            kept.append(i)
        scores = {m.ref: np.asarray(m.predict(features[m.extractor][:len(kept)]), np.float64) if kept
                  else np.empty(0) for m in self.models}
        return Scored(kept, scores, refused)
