"""Batch-norm statistics of an exported network, recomputed on one kind of training image.

Each training step draws one kind of batch (synthetic renders, 300-W photos, video frames, ...)
and batch norm's running statistics follow the last few batches (momentum 0.1), so the
statistics a network carries at the end of a step depend on which kinds the last steps drew,
and the mean and variance of synthetic renders are not those of photos. The network a run
exports is meant for photos: with ``TrainConfig.bn_calibration`` set to a batch kind, the
exported copy (model.pt, best.pt, and what validation scores) gets statistics averaged over a
fixed set of batches of that kind. The trained weights and the training itself are untouched.
"""

import copy
from dataclasses import replace

import torch

from pgnface.morphable import MorphableModel
from pgnface.train.batches import TrainBatches
from pgnface.train.config import KIND_SOURCES, KINDS, TrainConfig

# Calibration batches do not depend on the run's seed: the same images for every export.
CALIBRATION_SEED = 104729


def calibration_batches(config: TrainConfig, morphable: MorphableModel) -> TrainBatches:
    """Batches of the kind ``config.bn_calibration`` only, from the run's data sources.

    Args:
        config: the run's config; its ``bn_calibration`` names a kind of KINDS.
        morphable: the 3DMM on the device the batches are made on.

    Returns:
        A TrainBatches drawing only that kind (the other sources are not loaded).
    """
    kind = config.bn_calibration  # TrainConfig checks it names a kind whose data the run has
    if not kind:
        raise ValueError("config.bn_calibration is empty: set it to the batch kind to calibrate on")
    weights = {f"{k}_weight": (1.0 if k == kind else 0.0) for k in KINDS}
    synthetic = not KIND_SOURCES[kind]
    data = replace(config.data, backgrounds=config.data.backgrounds if synthetic else "", **weights)
    return TrainBatches(morphable, data, CALIBRATION_SEED)


@torch.no_grad()
def calibrate_batch_norm(
    net: torch.nn.Module, batches: TrainBatches, count: int, batch_size: int, device: torch.device
) -> torch.nn.Module:
    """A copy of `net` whose batch-norm statistics are the average over `count` batches.

    Args:
        net: the network (left untouched).
        batches: calibration_batches' batches; batches 0 .. count - 1 are used.
        count: number of batches (> 0).
        batch_size: images per batch.
        device: where the images go (the network's device).

    Returns:
        The calibrated copy, in eval mode.
    """
    if count <= 0:
        raise ValueError(f"count must be a positive number of batches, got {count}")
    calibrated = copy.deepcopy(net)
    norms = [m for m in calibrated.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    calibrated.train()
    for index in range(count):
        calibrated(batches.batch(index, batch_size)["image"].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return calibrated.eval()
