"""Cross-frame consistency against optical flow: DIS on known motion, the loss's known answers, training."""

import numpy as np
import pytest
import torch
from op_harness import shared_data_dir
from test_train_realdata import TINY  # the tiny network and batch of the training tests

from pgnface.train import TrainConfig, apply_overrides, train
from pgnface.train.flow import clip_flow, flow_consistency_loss


def _texture(size, seed=0):
    """[3, S, S] smooth random texture in [0, 1] (DIS needs gradients everywhere)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 6, size // 6, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return smooth[0].clamp(0, 1)


def test_dis_flow_recovers_a_known_shift():
    big = _texture(112)
    frames = torch.stack([big[:, 10:90, 10:90], big[:, 8:88, 13:93]])[None]  # content moves by (-3, +2) px
    flow, valid = clip_flow(frames)
    assert flow.shape == (1, 1, 2, 80, 80) and valid.shape == (1, 1, 1, 80, 80)
    inner = (0, 0, slice(None), slice(12, 68), slice(12, 68))
    assert float(valid[inner].mean()) > 0.9
    assert abs(float(flow[inner][0].median()) + 3.0) < 0.3
    assert abs(float(flow[inner][1].median()) - 2.0) < 0.3
    with pytest.raises(ValueError, match="clips"):
        clip_flow(frames[:, :1])


def test_flow_consistency_loss_known_answers():
    B, F, P, S = 2, 3, 50, 64
    g = torch.Generator().manual_seed(1)
    start = 10 + 40 * torch.rand(B, 1, P, 2, generator=g)
    step = torch.tensor([2.0, -1.0])
    projected = torch.cat([start + k * step for k in range(F)], 1)  # each frame moves by `step`
    flow = step.view(1, 1, 2, 1, 1).expand(B, F - 1, 2, S, S).clone()  # and so does the flow
    assert float(flow_consistency_loss(projected, flow, size=S)) < 1e-5
    wrong = projected.clone()
    wrong[:, 1:] += torch.tensor([3.0, 4.0])  # frames 1, 2 off by 5 px
    # pairs (0,1): 5 px off; (1,2): both shifted, consistent -> mean 2.5 px.
    assert float(flow_consistency_loss(wrong, flow, size=S)) == pytest.approx(2.5 / S, rel=1e-3)
    # Where the flow is invalid, or a vertex hidden in either frame, the pair does not count.
    valid = torch.ones(B, F - 1, 1, S, S)
    valid[:, 0] = 0
    assert float(flow_consistency_loss(wrong, flow, valid, size=S)) < 1e-5
    visible = torch.ones(B, F, P, dtype=torch.bool)
    visible[:, 1] = False  # no pair has both frames visible
    assert float(flow_consistency_loss(wrong, flow, visible=visible, size=S)) == 0.0
    # Gradients reach both frames' projections.
    wrong.requires_grad_(True)
    flow_consistency_loss(wrong, flow, size=S).backward()
    assert float(wrong.grad[:, 0].abs().sum()) > 0 and float(wrong.grad[:, 1].abs().sum()) > 0
    with pytest.raises(ValueError, match="flow"):
        flow_consistency_loss(projected, flow[:, :1], size=S)


def test_training_with_the_flow_term_on_video(tmp_path):
    video = shared_data_dir() / "video"
    if not video.exists():
        pytest.skip(f"shared data {video} is absent")
    cfg = apply_overrides(
        TrainConfig(),
        TINY
        + [
            "steps=2",
            "data.single_weight=0",
            "data.video_weight=1",
            f"data.video={video}",
            "data.clip_frames=2",
            "loss.flow=1",
        ],
    )
    summary = train(cfg, tmp_path, progress=False)
    assert summary["step"] == 2 and "flow" in summary["last"]
    assert np.isfinite(summary["last"]["flow"]) and summary["last"]["flow"] > 0
