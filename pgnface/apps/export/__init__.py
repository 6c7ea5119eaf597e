"""Exporting the network: the ONNX graph of the CNN and heads, and the NumPy pose solve that finishes it."""

from pgnface.apps.export.graph import (
    BASE_OUTPUTS,
    POSE_OUTPUTS,
    ExportableHeads,
    export_onnx,
    run_onnx,
)
from pgnface.apps.export.pose import finish_pose, umeyama

__all__ = ["BASE_OUTPUTS", "POSE_OUTPUTS", "ExportableHeads", "export_onnx", "finish_pose", "run_onnx", "umeyama"]
