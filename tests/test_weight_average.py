"""The weight average a run exports: its arithmetic, model.pt / best.pt holding it, exact resume."""

import pytest
import torch

from pgnface.nn import load_network
from pgnface.train import train
from pgnface.train.weight_average import WeightAverage
from tests.test_train import tiny_config


def test_average_follows_the_decay_and_copies_counters():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, decay=0.5)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    average.update(net)  # first update: decay min(0.5, 2 / 11) = 2/11
    d = 2.0 / 11.0
    expected = d * start["0.weight"] + (1 - d) * net[0].weight
    assert torch.allclose(average.module[0].weight, expected)
    assert average.module[1].num_batches_tracked.item() == 7
    assert not average.module[0].weight.requires_grad
    restored = WeightAverage(net, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1 and torch.equal(restored.module[0].weight, average.module[0].weight)
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(net, decay=1.0)


def test_ema_decay_must_be_below_one():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        tiny_config("ema_decay=1").validate()


def test_run_exports_the_average_and_resumes_it_exactly(tmp_path):
    extra = ["steps=4", "lr=1e-2", "ema_decay=0.9", "data.fixed_batches=2"]
    straight = {}

    def keep(trainer):
        straight["live"] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        straight["average"] = {k: v.clone() for k, v in trainer.average.module.state_dict().items()}

    train(tiny_config(*extra), tmp_path / "a", progress=False, trainer_hook=keep)
    net, _ = load_network(tmp_path / "a" / "model.pt")
    exported = net.state_dict()
    name = next(k for k, v in straight["live"].items() if v.is_floating_point() and v.numel() > 1)
    # model.pt is the average, not the trained weights (they differ after 4 steps at lr 1e-2).
    assert torch.equal(exported[name], straight["average"][name])
    assert not torch.equal(exported[name], straight["live"][name])
    train(tiny_config(*extra), tmp_path / "b", progress=False, until=2)
    train(tiny_config(*extra), tmp_path / "b", resume=True, progress=False)
    resumed, _ = load_network(tmp_path / "b" / "model.pt")
    for key, value in exported.items():
        assert torch.equal(value, resumed.state_dict()[key]), key
