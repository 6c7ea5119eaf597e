"""Evaluation protocols: AFLW2000-3D (68-point NME by yaw bin); baselines and plots."""

from .aflw2000 import EvalResult, evaluate, landmark_crop_box, load_aflw2000, nme
from .baselines import MeanShapePredictor

__all__ = ["EvalResult", "MeanShapePredictor", "evaluate", "landmark_crop_box", "load_aflw2000", "nme"]
