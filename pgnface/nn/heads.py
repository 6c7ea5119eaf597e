"""The two PGN heads: 68 3D landmarks (the pose guidance) and 3DMM coefficients.

Landmarks are (u, v, depth) in crop pixels: u right, v down, depth away from
the camera and centred on the landmarks' mean depth (the convention of
pgnface.data.synthetic). Heads output numbers of order 1 and scale them by
the crop size, so one network works at any input resolution.
"""

from typing import Dict, Sequence

import torch
from torch import nn

from pgnface.nn.backbones import conv_bn

NUM_LANDMARKS = 68
LANDMARK_MODES = ("heatmap", "regress")


def cell_centres(h: int, w: int, size: float, device=None, dtype=torch.float32):
    """Crop-pixel centres of the cells of an h x w grid over an S x S crop.

    Cell (i, j) has its centre at ((j + 0.5) S / w, (i + 0.5) S / h).

    Args:
        h: grid rows.
        w: grid columns.
        size: crop side S in pixels.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        (xs [w], ys [h]).
    """
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (size / w)
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (size / h)
    return xs, ys


def soft_argmax(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Expected cell centre under the softmax of heatmap logits.

    Args:
        logits: [B, L, h, w] heatmap logits over a grid covering the crop.
        size: crop size S in pixels (cell (i, j) has its centre at
            ((j + 0.5) S / w, (i + 0.5) S / h)).

    Returns:
        (uv [B, L, 2] crop pixels, prob [B, L, h, w]); soft-argmax cannot
        leave the span of the cell centres (half a cell inside the border).
    """
    B, L, h, w = logits.shape
    prob = torch.softmax(logits.reshape(B, L, h * w).float(), dim=-1).reshape(B, L, h, w)
    xs, ys = cell_centres(h, w, size, logits.device, prob.dtype)
    u = (prob.sum(2) * xs).sum(-1)
    v = (prob.sum(3) * ys).sum(-1)
    return torch.stack([u, v], -1), prob


class LandmarkHead(nn.Module):
    """68 x (u, v, depth) in crop pixels from the backbone's three feature maps.

    mode "heatmap": an FPN-style top-down fusion to stride 8, then per landmark
    a heatmap (soft-argmax gives u, v) and a depth map (its expectation under
    the heatmap gives the depth). mode "regress": pooled features -> 204 numbers.

    Args:
        channels: (C3, C4, C5) backbone channels.
        mode: "heatmap" or "regress".
        hidden: fused feature channels.
    """

    def __init__(self, channels: Sequence[int], mode: str = "heatmap", hidden: int = 64):
        super().__init__()
        if mode not in LANDMARK_MODES:
            raise ValueError(f"landmark_mode must be one of {LANDMARK_MODES}, got {mode!r}")
        self.mode = mode
        if mode == "heatmap":
            self.lateral = nn.ModuleList([nn.Conv2d(c, hidden, 1) for c in channels])
            self.fuse = nn.Sequential(conv_bn(hidden, hidden, 3), conv_bn(hidden, hidden, 3))
            # Default init: soft-argmax needs logits of order 1 to learn quickly (a near-zero
            # init leaves the heatmaps flat and the landmarks stuck at the centre for many steps).
            self.out = nn.Conv2d(hidden, 2 * NUM_LANDMARKS, 1)
        else:
            self.out = nn.Sequential(
                nn.Linear(channels[-1], 2 * hidden * 4),
                nn.ReLU(inplace=True),
                nn.Linear(2 * hidden * 4, 3 * NUM_LANDMARKS),
            )
            nn.init.normal_(self.out[-1].weight, std=1e-3)
            nn.init.zeros_(self.out[-1].bias)

    def forward(self, features: Sequence[torch.Tensor], size: int) -> Dict[str, torch.Tensor]:
        """Predicts the 68 landmarks of each crop.

        Args:
            features: the backbone's [C3, C4, C5] feature maps, [B, C_k, h_k, w_k].
            size: crop side S in pixels.

        Returns:
            {"landmarks": [B, 68, 3] (u, v in crop pixels, depth in pixels, away from
            the camera)}, plus "heatmaps" [B, 68, h, w] (softmax probabilities) in heatmap mode.
        """
        if self.mode == "regress":
            raw = self.out(features[-1].mean((2, 3))).float().reshape(-1, NUM_LANDMARKS, 3)
            # 0 is the crop centre at zero depth; the span is the crop.
            uv = size / 2 + raw[..., :2] * (size / 2)
            return {"landmarks": torch.cat([uv, raw[..., 2:] * (size / 2)], -1)}
        x = self.lateral[-1](features[-1])
        for feat, lateral in zip(reversed(features[:-1]), reversed(self.lateral[:-1])):
            x = nn.functional.interpolate(x, size=feat.shape[-2:], mode="nearest") + lateral(feat)
        maps = self.out(self.fuse(x))
        logits, depth_maps = maps[:, :NUM_LANDMARKS], maps[:, NUM_LANDMARKS:]
        uv, prob = soft_argmax(logits, size)
        depth = (prob * depth_maps.float()).sum((2, 3)) * (size / 2)
        return {"landmarks": torch.cat([uv, depth[..., None]], -1), "heatmaps": prob}


class CoefficientHead(nn.Module):
    """Pooled C5 features -> named output groups (identity, expression, albedo, SH lighting, ...).

    The last layer starts near zero (small, not zero, so gradients reach the
    backbone from the first step), so an untrained network predicts about the
    mean face under the default light: the geometry losses start from a sane shape.

    Args:
        in_channels: C5 channels.
        sizes: {name: number of outputs}, in output order.
        hidden: width of the hidden layer.
    """

    def __init__(self, in_channels: int, sizes: Dict[str, int], hidden: int = 256):
        super().__init__()
        self.sizes = dict(sizes)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, sum(self.sizes.values()))
        )
        nn.init.normal_(self.mlp[-1].weight, std=1e-3)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, feature: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args:
            feature: [B, C, h, w] C5 features (average-pooled).

        Returns:
            {name: [B, size]} float32, one entry per output group.
        """
        out = self.mlp(feature.mean((2, 3))).float()
        return dict(zip(self.sizes, out.split(list(self.sizes.values()), dim=1)))
