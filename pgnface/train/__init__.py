"""Training of the PGN reconstructor: losses, config, synthetic batches.

    from pgnface.train import losses, TrainConfig, apply_overrides
"""

from . import losses
from .config import DataConfig, LossWeights, TrainConfig, apply_overrides
from .data import SyntheticBatches, centre_depth

__all__ = ["DataConfig", "LossWeights", "SyntheticBatches", "TrainConfig", "apply_overrides", "centre_depth",
           "losses"]
