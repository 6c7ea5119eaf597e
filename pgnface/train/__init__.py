"""Training of the PGN reconstructor: losses, objective, config, synthetic batches, the loop (DDP-ready).

    from pgnface.train import TrainConfig, apply_overrides, train
    summary = train(apply_overrides(TrainConfig(), ["steps=200", "net.backbone=mobilenetv2"]), "runs/x")
"""

from . import losses
from .config import DataConfig, LossWeights, TrainConfig, apply_overrides
from .data import TrainBatches, centre_depth
from .loop import Trainer, lr_factor, train
from .objective import compute_losses

__all__ = ["DataConfig", "LossWeights", "TrainBatches", "TrainConfig", "Trainer", "apply_overrides",
           "centre_depth", "compute_losses", "losses", "lr_factor", "train"]
