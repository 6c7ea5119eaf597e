"""Batch-norm calibration of the exported network: the average it computes, the runs that use it."""

import pytest
import torch

from pgnface.nn import load_network
from pgnface.train import train
from pgnface.train.batch_norm_calibration import calibrate_batch_norm
from tests.test_train import tiny_config


class FixedBatches:
    """Stands in for TrainBatches: batch i is a fixed random image batch."""

    def __init__(self, count):
        g = torch.Generator().manual_seed(0)
        self.images = [torch.randn(4, 3, 8, 8, generator=g) * (i + 1) + i for i in range(count)]

    def batch(self, index, batch_size):
        return {"image": self.images[index]}


def test_statistics_are_the_average_over_the_batches_and_the_original_is_untouched():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1, bias=False), torch.nn.BatchNorm2d(3))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    net[1].running_mean.fill_(5.0)
    batches = FixedBatches(3)
    calibrated = calibrate_batch_norm(net, batches, 3, 4, torch.device("cpu"))
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches.images])
    variances = torch.stack([x.transpose(0, 1).reshape(3, -1).var(dim=1) for x in batches.images])
    torch.testing.assert_close(calibrated[1].running_mean, means.mean(0))
    torch.testing.assert_close(calibrated[1].running_var, variances.mean(0))
    assert calibrated[1].momentum == net[1].momentum and not calibrated.training
    assert torch.all(net[1].running_mean == 5.0)
    with pytest.raises(ValueError, match="count must be a positive"):
        calibrate_batch_norm(net, batches, 0, 4, torch.device("cpu"))


def test_config_names_a_kind_with_its_data():
    with pytest.raises(ValueError, match="bn_calibration must be '' or one of"):
        tiny_config("bn_calibration=photos").validate()
    with pytest.raises(ValueError, match="bn_calibration=real300w needs data.real300w"):
        tiny_config("bn_calibration=real300w").validate()
    with pytest.raises(ValueError, match="bn_calibration_batches must be positive"):
        tiny_config("bn_calibration_batches=0").validate()


def test_model_pt_carries_the_calibrated_statistics(tmp_path):
    extra = ["steps=2", "data.fixed_batches=2"]
    runs = {}

    def keep(trainer):
        runs["trained"] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        runs["trainer"] = trainer

    train(
        tiny_config(*extra, "bn_calibration=single", "bn_calibration_batches=2"),
        tmp_path / "a",
        progress=False,
        trainer_hook=keep,
    )
    calibrated, _ = load_network(tmp_path / "a" / "model.pt")
    train(tiny_config(*extra), tmp_path / "b", progress=False)
    plain, _ = load_network(tmp_path / "b" / "model.pt")
    name = next(k for k in runs["trained"] if k.endswith("running_mean"))
    weight = next(k for k, v in runs["trained"].items() if k.endswith("weight") and v.dim() == 4)
    # Same training, same weights; only the statistics of the exported copy differ.
    assert torch.equal(calibrated.state_dict()[weight], plain.state_dict()[weight])
    assert torch.equal(plain.state_dict()[name], runs["trained"][name])
    assert not torch.allclose(calibrated.state_dict()[name], runs["trained"][name])
    # model.pt and a validation at the same step share one calibrated copy.
    trainer = runs["trainer"]
    assert trainer.export_network() is trainer.export_network()
    assert torch.equal(trainer.export_network().state_dict()[name], calibrated.state_dict()[name])
