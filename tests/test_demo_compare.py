"""`pgnface demo --compare`: PGN-pose vs regressed-pose rows on the same clip."""

import json
import shutil

import pytest
from tiny_nets import train_tiny

from pgnface.apps.demo import demo_clip
from pgnface.cli import main
from pgnface.morphable import MorphableModel


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    return train_tiny(root / "pgn_tiny", size=64), train_tiny(root / "regress_tiny", size=48, pose_mode="regress")


def test_compare_adds_a_row_per_network(nets, tmp_path, capsys):
    pgn, regress = nets
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "-o",
                str(out),
                "--checkpoint",
                str(pgn),
                "--frames",
                "3",
                "--compare",
                str(regress),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "pgn: pgn_tiny" in captured.out and "regress: regress_tiny" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pose_mode"] == "pgn"
    names = [(n["pose_mode"], n["name"], n["input_size"]) for n in metrics["networks"]]
    assert names == [("pgn", "pgn_tiny", 64), ("regress", "regress_tiny", 48)]
    assert metrics["networks"][0]["mean"] == metrics["mean"]
    other = metrics["networks"][1]
    assert len(other["frames"]) == 3 and all(other["mean"][k] > 0 for k in ("nme2d", "yaw_error"))
    # The same person and poses at both sizes.
    assert [r["yaw_true"] for r in other["frames"]] == pytest.approx(
        [r["yaw_true"] for r in metrics["frames"]], abs=1e-4
    )


def test_same_clip_at_every_size():
    morphable = MorphableModel.builtin()
    small, large = demo_clip(morphable, 48, 2, 0), demo_clip(morphable, 96, 2, 0)
    assert (small["landmarks2d"] * 2 - large["landmarks2d"]).abs().max() < 1e-2


def test_bundled_ablation_networks_are_compared_by_default(nets, tmp_path, monkeypatch, capsys):
    import pgnface.nn.checkpoint as checkpoint

    pgn, regress = nets
    assets = tmp_path / "assets"
    assets.mkdir()
    shutil.copy(regress, assets / "pgn_ablation_regress_tiny.pt")
    shutil.copy(pgn, assets / "pgn_other.pt")  # not a pgn_ablation_* name: not compared
    monkeypatch.setattr(checkpoint, "ASSETS", assets)
    assert main(["demo", "-o", str(tmp_path / "a"), "--checkpoint", str(pgn), "--frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert "regress: pgn_ablation_regress_tiny" in printed and "pgn_other" not in printed
    assert main(["demo", "-o", str(tmp_path / "b"), "--checkpoint", str(pgn), "--frames", "2", "--no-compare"]) == 0
    assert "regress:" not in capsys.readouterr().out
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert len(metrics["networks"]) == 1
