"""Deployment exports of pruned models: ONNX (checked with onnxruntime) and int8 dynamic quantization.

Optional dependencies (onnx, onnxruntime, onnxscript) are imported only when used.
"""

from secateurs.export.onnx import export_onnx, onnx_int8
from secateurs.quantization.dynamic import quantize_int8

__all__ = ["export_onnx", "onnx_int8", "quantize_int8"]
