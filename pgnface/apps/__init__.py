"""Applications of a trained network: the reconstruction pipeline for images and clips, the demo, ONNX export."""

from pgnface.apps.pipeline import FaceResult, ReconstructionPipeline

__all__ = ["FaceResult", "ReconstructionPipeline"]
