"""Model workers and the model registry.

- `registry.py`: `load_model("fraud_xgb@3")` reads `registry/<name>/<version>/model.yaml`,
  checks the file's sha256 and serves `predict()` through a backend.
- `backend.py` / `onnx_backend.py`: the one interface a model runtime implements.
- `train.py`: builds the demo family from the synthetic generator, deterministically.
- `worker.py` / `core.py` / `cli.py`: `scorestream worker`, consume features, score, emit.
"""
