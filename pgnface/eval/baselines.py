"""Trivial predictors that give the evaluation tables a floor to compare against."""

import math

import torch

from ..model import FRONTAL, MorphableModel


class MeanShapePredictor:
    """Predicts the same frontal mean face for every crop.

    The model's mean 68 landmarks, seen frontally, are placed so that their
    bounding box is centred in the crop with its larger side equal to
    size / sqrt(2), which is where the standard AFLW2000-3D crop puts the
    ground-truth box. Any method worth its name beats this.
    """

    def __init__(self, model: MorphableModel = None, input_size: int = 120):
        model = model or MorphableModel.builtin()
        if sorted(model.landmark_ids.tolist()) != list(range(68)):
            raise ValueError(f"{model.name} does not define all 68 landmarks")
        order = torch.argsort(model.landmark_ids)
        lm = (model.mean[model.landmark_vertices[order]].double() @ FRONTAL.double().T)
        lo, hi = lm[:, :2].min(0).values, lm[:, :2].max(0).values
        scale = input_size / math.sqrt(2.0) / float((hi - lo).max())
        centre = torch.cat([(lo + hi) / 2, lm[:, 2:].mean(0)])
        self.landmarks = ((lm - centre) * scale + torch.tensor([input_size / 2, input_size / 2, 0.0],
                                                                dtype=torch.float64)).float()
        self.input_size = input_size

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return self.landmarks.to(crops.device).expand(crops.shape[0], 68, 3)
