"""ONNX models through onnxruntime, one thread per session.

One intra-op thread: a worker is one process per model version and scales by
replicas (partitions), not by threads fighting over the same cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from models.backend import ModelBackend


class OnnxBackend(ModelBackend):
    """options: `output` (name of the probability output), `column` (the positive class)."""

    kind = "onnx"

    def load(self) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3              # ORT warns about unused initialisers on every load
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.options.get("output", "probabilities")
        self.column = int(self.options.get("column", 1))
        known = [o.name for o in self.session.get_outputs()]
        if self.output not in known:
            raise ValueError(f"{self.path}: no output {self.output!r} (outputs: {', '.join(known)})")

    def predict(self, X: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output], {self.input: X})
        out = np.asarray(out)
        return (out[:, self.column] if out.ndim == 2 else out).astype(np.float64)

    def unload(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "column": self.column}
