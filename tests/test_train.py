"""Training: config and overrides, the CPU smoke run, exact resume, 2-process gloo DDP, the CLI."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pgnface.cli import main
from pgnface.train import TrainConfig, apply_overrides, lr_factor, train

# A network and batch small enough for a few CPU steps per second.
TINY = [
    "net.backbone=resnet18",
    "net.width=0.125",
    "net.head_hidden=32",
    "net.fpn_channels=16",
    "data.size=64",
    "batch_size=4",
    "log_every=1",
    "threads=1",
    "warmup_steps=2",
]


def tiny_config(*extra):
    return apply_overrides(TrainConfig(), TINY + list(extra))


def test_config_overrides_and_json(tmp_path):
    cfg = apply_overrides(
        TrainConfig(),
        ["lr=3e-4", "net.backbone=mobilenetv2", "amp=true", "loss.photometric=0", "data.clip_weight=0.5", "steps=7"],
    )
    assert (cfg.lr, cfg.net.backbone, cfg.amp, cfg.loss.photometric, cfg.data.clip_weight, cfg.steps) == (
        3e-4,
        "mobilenetv2",
        True,
        0.0,
        0.5,
        7,
    )
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_json(path) == cfg
    path.write_text(json.dumps({"net": {"width": 1}, "steps": 3}))
    assert TrainConfig.from_json(path).net.width == 1.0
    for bad, match in [
        (["lr"], "key=value"),
        (["nope=1"], "unknown config key 'nope'"),
        (["net.depth=3"], "net.depth"),
        (["steps=1.5"], "steps must be an int"),
        (["amp=maybe"], "amp must be true or false"),
        (["foo.bar=1"], "section 'foo'"),
    ]:
        with pytest.raises(ValueError, match=match):
            apply_overrides(TrainConfig(), bad)
    with pytest.raises(ValueError, match="batch_size"):
        apply_overrides(TrainConfig(), ["batch_size=0"]).validate()
    with pytest.raises(ValueError, match="pose_mode"):
        apply_overrides(TrainConfig(), ["net.pose_mode=x"]).validate()


def test_lr_schedule():
    cfg = apply_overrides(TrainConfig(), ["steps=100", "warmup_steps=10", "min_lr_ratio=0.1"])
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.55)


def test_smoke_run_loss_decreases(tmp_path):
    # Two fixed batches: the run must fit them (fresh random faces every step learn too slowly for a smoke test).
    cfg = tiny_config("steps=30", "lr=1e-2", "data.fixed_batches=2", "checkpoint_every=10")
    summary = train(cfg, tmp_path, progress=False)
    history = summary["history"]
    assert len(history) == 30 and all(map(lambda x: x == x, history))
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))
    assert {"loss", "lr", "img_per_s", "landmarks3d", "photometric"} <= set(records[0])
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "model.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    from pgnface.nn import load_network

    net, payload = load_network(tmp_path / "model.pt")
    assert payload["network"]["width"] == 0.125


def test_resume_matches_uninterrupted_run(tmp_path):
    # Clips and AMP included, so the mixed data schedule and the scaler state are covered.
    extra = ["steps=6", "data.clip_weight=1", "data.clip_frames=2", "amp=true", "loss.photometric=0.1"]
    straight = train(tiny_config(*extra), tmp_path / "a", progress=False)
    train(tiny_config(*extra), tmp_path / "b", progress=False, until=3)  # "interrupted" at step 3
    resumed = train(tiny_config(*extra), tmp_path / "b", resume=True, progress=False)
    assert resumed["step"] == 6 and len(resumed["history"]) == 3
    assert resumed["history"] == straight["history"][3:]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["scheduler"] == b["scheduler"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)

    def dump(trainer):
        torch.save(
            {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}, os.path.join(out, f"rank{rank}.pt")
        )

    train(
        tiny_config("steps=2", "batch_size=2", "device=cpu"),
        os.path.join(out, "run"),
        progress=False,
        trainer_hook=dump,
    )


def test_ddp_two_processes_gloo_stay_in_sync(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    p0 = torch.load(tmp_path / "rank0.pt")
    p1 = torch.load(tmp_path / "rank1.pt")
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state_dict"]
    for key, value in p0.items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics are per rank (DDP broadcasts rank 0's at each forward)
        torch.testing.assert_close(value, p1[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and records[-1]["img_per_s"] > 0


def test_cli_train_and_resume(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--out", str(out), "--steps", "2", "--batch-size", "2", "--quiet"] + TINY[:-3]
    assert main(args) == 0
    assert "trained to step 2" in capsys.readouterr().out
    assert main(args[:4] + ["4"] + args[5:] + ["--resume"]) == 0
    assert "trained to step 4" in capsys.readouterr().out
    assert main(args[:4] + ["4"] + args[5:] + ["--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "z")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "net.backbone=vgg"]) == 2
    assert "backbone" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--resume", "--steps", "1"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    # Fine-tuning from the run's network; a missing init file is one clear line.
    assert (
        main(
            ["train", "--out", str(tmp_path / "ft"), "--steps", "1", "--quiet", "--init", str(out / "model.pt")]
            + TINY[4:-3]
        )
        == 0
    )
    assert main(["train", "--out", str(tmp_path / "ft2"), "--init", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_cli_bench_arguments(capsys):
    assert main(["bench", "nosuch"]) == 2
    assert "unknown benchmark 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "train_step" in capsys.readouterr().out
