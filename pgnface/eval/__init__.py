"""Evaluation protocols: AFLW2000-3D (68-point NME by yaw bin); baselines and plots."""

from pgnface.eval.aflw2000 import EvalResult, evaluate, load_aflw2000
from pgnface.eval.metrics import nme
from pgnface.eval.predictors import MeanShapePredictor

__all__ = ["EvalResult", "MeanShapePredictor", "evaluate", "load_aflw2000", "nme"]
