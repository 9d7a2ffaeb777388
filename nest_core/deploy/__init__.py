"""Deployable exports of synthesized models: torch-only files (TorchScript, torch.export,
ONNX) that store only active weights and run dense or sparse CSR per layer (docs/export.md).

>>> from nest_core.deploy.api import export_run
>>> report = export_run("runs/lenet5", fmt="torchscript", sparse="auto")  # doctest: +SKIP
"""
