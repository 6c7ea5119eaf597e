"""Checkpoint files: user permissions, no stale temporaries, clear errors for weights that do not fit."""

import os
import subprocess
import sys

import pytest
import torch

from pgnface.morphable import MorphableModel
from pgnface.nn import PGNNetwork, load_network, save_network
from pgnface.nn.safe_io import atomic_save, remove_stale_temps

TINY = dict(backbone="resnet18", width=0.125, head_hidden=32, fpn_channels=16)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return PGNNetwork(MorphableModel.builtin(), **TINY)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_checkpoint_gets_the_users_umask(tmp_path, umask_022):
    atomic_save({"x": torch.zeros(2)}, tmp_path / "a.pt")
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    os.umask(0o027)
    atomic_save({"x": torch.zeros(2)}, tmp_path / "b.pt")
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".model.pt.{int(dead.stdout)}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".model.pt.{os.getppid()}.def456.tmp"  # a writer that is still running
    live.write_bytes(b"being written")
    atomic_save({"x": torch.ones(1)}, tmp_path / "model.pt")
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "model.pt"])
    remove_stale_temps(tmp_path / "missing-folder" / "model.pt")  # no folder: nothing to do


def test_missing_and_mis_shaped_weights_are_a_clear_value_error(tiny_net, tmp_path):
    state = tiny_net.state_dict()
    first, second = list(state)[:2]
    broken = {k: v for k, v in state.items() if k != first}
    broken[second] = torch.zeros(3, 1)
    broken["extra.weight"] = torch.zeros(1)
    save_network(tmp_path / "net.pt", tiny_net, extra={"state_dict": broken})
    with pytest.raises(ValueError) as err:
        load_network(tmp_path / "net.pt")
    message = str(err.value)
    assert "net.pt does not fit its network" in message
    assert f"1 weight(s) missing: {first}" in message
    assert "1 weight(s) unexpected: extra.weight" in message
    assert f"{second} (3, 1)" in message and "\n" not in message


def test_incomplete_checkpoint_is_a_clear_value_error(tiny_net, tmp_path):
    save_network(tmp_path / "net.pt", tiny_net, extra={"network": {"backbone": "resnet18", "no_such": 1}})
    with pytest.raises(ValueError, match="network settings do not describe a PGNNetwork"):
        load_network(tmp_path / "net.pt")
    save_network(tmp_path / "net.pt", tiny_net, extra={"state_dict": None})
    with pytest.raises(ValueError, match="'state_dict' entry is missing"):
        load_network(tmp_path / "net.pt")
