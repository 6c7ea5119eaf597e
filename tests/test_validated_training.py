"""Training with a validation split: val.jsonl every N steps, best.pt the best network, resume keeps both."""

import json

import pytest
import torch
from test_eval_300w import fake_folder
from test_train_realdata import TINY

from pgnface.apps.validated_training import read_validation_log, train_validated
from pgnface.cli import main
from pgnface.eval.face300w import evaluate, load_300w
from pgnface.eval.predictors import CheckpointPredictor
from pgnface.nn import read_checkpoint
from pgnface.train import TrainConfig, apply_overrides


def test_validation_every_n_steps_keeps_the_best_network(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    fake_folder(val)
    config = apply_overrides(TrainConfig(), TINY + ["steps=5", "lr=3e-3", "seed=3"])
    summary = train_validated(config, tmp_path / "run", val, every=2, progress=False)
    records = read_validation_log(tmp_path / "run" / "val.jsonl")
    # Steps 2 and 4, then the last step.
    assert [r["step"] for r in records] == [2, 4, 5]
    assert summary["validations"] == records
    best = min(records, key=lambda r: r["nme_io_mean"])
    assert summary["best"] == best
    stored = read_checkpoint(tmp_path / "run" / "best.pt")
    assert stored["step"] == best["step"] and stored["validation"] == best
    # best.pt is a network that scores what its record says.
    again = evaluate(CheckpointPredictor(tmp_path / "run" / "best.pt"), load_300w(val)).summary()
    assert again["nme_io"]["mean"] == pytest.approx(best["nme_io_mean"], rel=1e-4)
    # The network is scored in eval mode and trains on in train mode.
    assert (tmp_path / "run" / "model.pt").is_file()

    # A resumed run with more steps appends and compares with the earlier records.
    more = apply_overrides(config, ["steps=6"])
    summary = train_validated(more, tmp_path / "run", val, every=2, resume=True, progress=False)
    records = read_validation_log(tmp_path / "run" / "val.jsonl")
    assert [r["step"] for r in records] == [2, 4, 5, 6]
    assert summary["best"] == min(records, key=lambda r: r["nme_io_mean"])


def test_bad_validation_settings(tmp_path):
    config = apply_overrides(TrainConfig(), TINY + ["steps=1"])
    with pytest.raises(ValueError, match="every must be a positive"):
        train_validated(config, tmp_path / "run", tmp_path, every=0, progress=False)
    with pytest.raises((ValueError, FileNotFoundError)):
        train_validated(config, tmp_path / "run", tmp_path / "missing", progress=False)


def test_the_train_command_validates(tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    fake_folder(val)
    args = ["train", "--out", str(tmp_path / "run"), "--steps", "2", "--quiet", "--validate", str(val)]
    assert main(args + ["--validate-every", "1"] + TINY) == 0
    assert "best on" in capsys.readouterr().out
    lines = (tmp_path / "run" / "val.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    assert torch.is_tensor(next(iter(read_checkpoint(tmp_path / "run" / "best.pt")["state_dict"].values())))
    # A finished run resumed without new steps has nothing to do, and says so.
    assert main(args + ["--resume", "--validate-every", "1"] + TINY) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(args + ["--overwrite", "--validate-every", "0"] + TINY) == 2
    assert "--validate-every" in capsys.readouterr().err


def test_a_fresh_run_never_inherits_an_old_best_network(tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    fake_folder(val)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"another run's network")
    args = ["train", "--out", str(run), "--steps", "1", "--quiet", "--validate", str(val)] + TINY
    assert main(args) == 2  # refused: the folder holds a run's work
    assert "best.pt" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert read_checkpoint(run / "best.pt")["step"] == 1
