"""Tiny networks trained for two steps by `pgnface train`, for command-line tests."""

from pgnface.cli import main

TINY = [
    "net.backbone=resnet18",
    "net.width=0.125",
    "net.head_hidden=32",
    "net.fpn_channels=16",
    "threads=1",
    "warmup_steps=1",
]


def train_tiny(folder, size: int = 64, pose_mode: str = "pgn"):
    """Trains a tiny network into `folder` (2 steps, batch 2); returns the path of its model.pt."""
    args = [
        "train",
        "--out",
        str(folder),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--quiet",
        f"data.size={size}",
        f"net.pose_mode={pose_mode}",
    ] + TINY
    assert main(args) == 0
    return folder / "model.pt"
