"""Training of the PGN network: losses, objective, config, batches from every data source, the loop (DDP-ready).

from pgnface.train import TrainConfig, apply_overrides, train
summary = train(apply_overrides(TrainConfig(), ["steps=200", "net.backbone=mobilenetv2"]), "runs/x")
"""

from pgnface.train import losses
from pgnface.train.batches import TrainBatches, centre_depth
from pgnface.train.config import DataConfig, LossWeights, TrainConfig, apply_overrides
from pgnface.train.loop import Trainer, TrainingDiverged, load_run_config, lr_factor, train
from pgnface.train.objective import compute_losses

__all__ = [
    "DataConfig",
    "LossWeights",
    "TrainBatches",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "centre_depth",
    "compute_losses",
    "load_run_config",
    "losses",
    "lr_factor",
    "train",
]
