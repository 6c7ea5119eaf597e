"""Predictors for the evaluation protocols: a trained PGN checkpoint, and a trivial floor."""

import math

import torch

from pgnface.morphable import FRONTAL, MorphableModel
from pgnface.morphable.ibug68 import mirror_landmarks
from pgnface.nn import load_network


class MeanShapePredictor:
    """Predicts the same frontal mean face for every crop.

    The model's mean 68 landmarks, seen frontally, are placed so that their
    bounding box is centred in the crop with its larger side equal to
    size / sqrt(2), which is where the standard AFLW2000-3D crop puts the
    ground-truth box. Any method worth its name beats this. Called on crops
    [B, 3, S, S] it returns [B, 68, 3] landmarks in crop pixels.

    Args:
        morphable: the 3DMM (the built-in model if None).
        input_size: crop size S.

    Raises:
        ValueError: the 3DMM does not define all 68 landmarks.
    """

    def __init__(self, morphable: MorphableModel = None, input_size: int = 120):
        morphable = morphable or MorphableModel.builtin()
        if sorted(morphable.landmark_ids.tolist()) != list(range(68)):
            raise ValueError(f"{morphable.name} does not define all 68 landmarks")
        order = torch.argsort(morphable.landmark_ids)
        lm = morphable.mean[morphable.landmark_vertices[order]].double() @ FRONTAL.double().T
        lo, hi = lm[:, :2].min(0).values, lm[:, :2].max(0).values
        scale = input_size / math.sqrt(2.0) / float((hi - lo).max())
        centre = torch.cat([(lo + hi) / 2, lm[:, 2:].mean(0)])
        self.landmarks = (
            (lm - centre) * scale + torch.tensor([input_size / 2, input_size / 2, 0.0], dtype=torch.float64)
        ).float()
        self.input_size = input_size

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return self.landmarks.to(crops.device).expand(crops.shape[0], 68, 3)


LANDMARK_SOURCES = ("head", "recon")


class NetworkPredictor:
    """The landmarks of a PGN network in memory, called on crops [B, 3, S, S] -> [B, 68, 3].

    The network runs in eval mode for the call and goes back to the mode it was in,
    so a training loop can score the network it is training.

    Args:
        net: a ``pgnface.nn.PGNNetwork``.
        input_size: crop size S.
        flip: test-time flip averaging (see ``CheckpointPredictor``).
        landmarks: ``"head"``, the landmark head's 68 points, or ``"recon"``, the
            68 landmark vertices of the posed reconstruction (what the 3D face
            itself says, so its pose counts: the pose ablation scores this one).

    Raises:
        ValueError: an unknown ``landmarks``, or ``"recon"`` with a 3DMM that does
            not define all 68 landmarks.
    """

    def __init__(self, net: torch.nn.Module, input_size: int, flip: bool = False, landmarks: str = "head"):
        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(f"landmarks must be one of {', '.join(LANDMARK_SOURCES)}, got {landmarks!r}")
        self.net = net
        self.input_size = int(input_size)
        self.flip = flip
        self.source = landmarks
        self.recon_order = None
        if landmarks == "recon":
            ids = getattr(net, "module", net).morphable.landmark_ids
            if sorted(ids.tolist()) != list(range(68)):
                raise ValueError("landmarks='recon' needs a 3DMM that defines all 68 landmarks")
            self.recon_order = torch.argsort(ids)

    def _landmarks(self, crops: torch.Tensor) -> torch.Tensor:
        out = self.net(crops)
        if self.recon_order is None:
            return out["landmarks"].float()
        return out["landmarks_recon"][:, self.recon_order.to(crops.device)].float()

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        was_training = self.net.training
        self.net.eval()
        try:
            device = next(self.net.parameters()).device
            crops = crops.to(device)
            landmarks = self._landmarks(crops)
            if self.flip:
                mirrored = mirror_landmarks(self._landmarks(crops.flip(-1)), crops.shape[-1])
                landmarks = (landmarks + mirrored) / 2
            return landmarks
        finally:
            self.net.train(was_training)


class CheckpointPredictor(NetworkPredictor):
    """The landmarks of a trained PGN reconstructor (``pgnface train``'s model.pt).

    Args:
        path: the checkpoint.
        morphable: the 3DMM it was trained with (the built-in model if None); a
            different 3DMM is refused with a ValueError saying what differs.
        input_size: crop size; by default the size the network was trained at.
        device: where to run the network.
        flip: test-time flip averaging: the landmarks are the mean of the
            crop's and the mirrored crop's (mirrored back, left and right renamed).
        landmarks: ``"head"`` or ``"recon"`` (see ``NetworkPredictor``).
    """

    def __init__(
        self,
        path,
        morphable: MorphableModel = None,
        input_size: int = None,
        device="cpu",
        flip: bool = False,
        landmarks: str = "head",
    ):

        net, payload = load_network(path, morphable, map_location=device)
        super().__init__(net.to(device), int(input_size or payload.get("input_size") or 120), flip, landmarks)
