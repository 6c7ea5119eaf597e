"""Training never loses work: resume keeps the run, fresh runs do not replace one, signals checkpoint,
divergence stops before spoiling the weights, nonsense settings are refused."""

import json
import math
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pgnface.cli.main import main
from pgnface.train import TrainConfig, TrainingDiverged, apply_overrides, load_run_config, train
from pgnface.train import loop as train_loop

TINY = [
    "net.backbone=resnet18",
    "net.width=0.125",
    "net.head_hidden=32",
    "net.fpn_channels=16",
    "data.size=64",
    "batch_size=2",
    "log_every=1",
    "threads=1",
    "warmup_steps=1",
]


def tiny_config(*extra):
    return apply_overrides(TrainConfig(), TINY + list(extra))


def log_records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def checkpoint_step(run):
    return int(torch.load(run / "checkpoint.pt", weights_only=False)["step"])


def test_resume_keeps_the_run_configuration(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("steps=3", "checkpoint_every=2"), run, progress=False, until=1)
    stale = run / ".checkpoint.pt.999999999.x.tmp"  # left by a killed writer (no such process)
    stale.write_bytes(b"half")
    # A plain resume continues the run as configured: 3 steps, not the default 1000.
    summary = train(None, run, resume=True, progress=False, until=2)
    assert summary["step"] == 2 and load_run_config(run).steps == 3 and not stale.exists()
    # Defaults are not a request to change the run: a full default config is refused, naming the keys.
    with pytest.raises(ValueError, match=r"would change it: .*net\.width=1\.0 \(the run has 0\.125\)"):
        train(TrainConfig(), run, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"lr=0\.5 \(the run has 0\.001\)"):
        train(apply_overrides(load_run_config(run), ["lr=0.5"]), run, resume=True, progress=False)
    with pytest.raises(ValueError, match="steps=1 is below the step the run has reached"):
        train(apply_overrides(load_run_config(run), ["steps=1"]), run, resume=True, progress=False)
    # Harmless changes are applied and recorded in the log.
    summary = train(apply_overrides(load_run_config(run), ["steps=4"]), run, resume=True, progress=False)
    assert summary["step"] == 4 and checkpoint_step(run) == 4
    resumes = [r for r in log_records(run) if r.get("event") == "resume"]
    assert resumes == [{"step": 2, "event": "resume", "changed": {"steps": [3, 4]}}]
    assert [r["step"] for r in log_records(run) if "loss" in r] == [1, 2, 3, 4]


def test_fresh_run_does_not_replace_a_run(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("steps=1"), run, progress=False)
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "model.pt", "log.jsonl")}
    with pytest.raises(ValueError, match="already holds a run .*--resume.*--overwrite"):
        train(tiny_config("steps=1", "seed=1"), run, progress=False)
    assert {name: (run / name).read_bytes() for name in before} == before
    train(tiny_config("steps=1", "seed=1"), run, progress=False, overwrite=True)
    assert (run / "checkpoint.pt").read_bytes() != before["checkpoint.pt"]
    assert [r["step"] for r in log_records(run)] == [1]


SIGNALLED_RUN = """
import sys
from pgnface.train import TrainConfig, apply_overrides, train
config = apply_overrides(TrainConfig(), sys.argv[2:])
summary = train(config, sys.argv[1], progress=False)
print("interrupted:", summary["interrupted"], "step:", summary["step"])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_checkpoints_the_current_step(sig, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGNALLED_RUN), str(run), "steps=100000", *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ((run / "log.jsonl").is_file() and len(log_records(run)) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    step = checkpoint_step(run)
    assert f"stopped by {sig.name} at step {step}" in err and f"--out {run} --resume" in err
    assert f"interrupted: {sig.name} step: {step}" in out
    assert [r["step"] for r in log_records(run)] == list(range(1, step + 1))
    assert train(None, run, resume=True, progress=False, until=step + 1)["step"] == step + 1


def _poisoned_losses(step_to_poison, poison):
    real = train_loop.compute_losses
    calls = []

    def compute_losses(out, *args):
        total, terms = real(out, *args)
        calls.append(1)
        if len(calls) == step_to_poison:
            total, terms = poison(total, terms, out)
        return total, terms

    return compute_losses


def _nan_loss(total, terms, out):
    return total * math.nan, {**terms, "photometric": torch.tensor(math.nan)}


def _nan_gradient(total, terms, out):
    # sqrt'(0) = inf: a finite loss whose gradient is not
    return total + (out["landmarks"].sum() * 0).abs().sqrt(), terms


@pytest.mark.parametrize("poison, what", [(_nan_loss, "loss became nan"), (_nan_gradient, "gradient norm became")])
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(poison, what, tmp_path, monkeypatch):
    monkeypatch.setattr(train_loop, "compute_losses", _poisoned_losses(3, poison))
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=rf"{what}.* at step 3.*checkpoint.pt \(step 2\) is the last good"):
        train(tiny_config("steps=5", "checkpoint_every=2"), run, progress=False)
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2 and not (run / "model.pt").exists()
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "override, match",
    [
        ("lr=inf", "lr must be a finite number"),
        ("lr=nan", "lr must be a finite number"),
        ("loss.photometric=nan", "loss.photometric must be a finite number"),
        ("data.crop_scale=inf", "data.crop_scale must be a finite number"),
        ("weight_decay=-1", "weight_decay must be >= 0"),
        ("min_lr_ratio=2", r"min_lr_ratio must be in \[0, 1\]"),
        ("threads=-3", "threads must be >= 0"),
        ("warmup_steps=-1", "warmup_steps must be >= 0"),
    ],
)
def test_nonsense_settings_are_refused(override, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        apply_overrides(TrainConfig(), [override]).validate()
    config = TrainConfig.from_dict(json.loads('{"lr": Infinity}'))
    with pytest.raises(ValueError, match="lr must be a finite number"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_resume_continues_the_run_and_fresh_runs_need_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config("steps=3"), run, progress=False, until=1)
    # The README's form: no options but --resume continues the run as configured (3 steps).
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert "trained to step 3" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--quiet", "lr=0.5"]) == 2
    assert "lr=0.5 (the run has 0.001)" in capsys.readouterr().err
    fresh = ["train", "--out", str(run), "--quiet", "--steps", "1", *TINY]
    assert main(fresh) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert checkpoint_step(run) == 3
    assert main(fresh + ["--overwrite"]) == 0 and checkpoint_step(run) == 1
