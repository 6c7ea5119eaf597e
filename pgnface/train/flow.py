"""Cross-frame consistency checked against dense optical flow (OpenCV's DIS).

In a video clip the reconstruction says where every vertex moves from one
frame to the next: its projection in frame t and in frame t + 1. Optical
flow measures the same motion from the pixels alone. ``flow_consistency_loss``
asks the two to agree for vertices visible in both frames, where the flow is
trustworthy (its forward and backward estimates cancel): a real-video
correspondence signal that needs no labels and no albedo model.

    flow, valid = clip_flow(frames)                     # frames [n, F, 3, S, S] in [0, 1]
    loss = flow_consistency_loss(projected, flow, valid, visible, size)
"""

from typing import Optional, Tuple

import cv2
import numpy as np
import torch

from pgnface.train.losses import robust_norm, sample_colours, weighted_mean


def _grey(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] RGB in [0, 1] -> [H, W] uint8 grey."""
    rgb = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear [H, W, C] field at [H, W, 2] pixel-centre positions (x, y), border-clamped."""
    return cv2.remap(
        field,
        (points[..., 0] - 0.5).astype(np.float32),
        (points[..., 1] - 0.5).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def clip_flow(frames: torch.Tensor, max_error: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward flow between consecutive frames of clips, with a forward-backward check.

    Args:
        frames: [n, F, 3, S, S] RGB clips in [0, 1].
        max_error: a pixel's flow is valid where following it forward and then
            the backward flow back lands within max_error + 5 % of its length.

    Returns:
        flow [n, F - 1, 2, S, S] (pixels, from frame t to t + 1) and valid
        [n, F - 1, 1, S, S] in {0, 1}, float32 on the frames' device.

    Raises:
        ValueError: frames is not [n, F >= 2, 3, H, W].
    """
    if frames.dim() != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
        raise ValueError(f"frames must be [n, F >= 2, 3, H, W] clips, got {list(frames.shape)}")
    n, F, _, H, W = frames.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    pixels = np.stack([xs, ys], -1)
    flows = np.zeros((n, F - 1, H, W, 2), np.float32)
    valid = np.zeros((n, F - 1, H, W), np.float32)
    # One DIS instance for every pair (no initial flow is used, so calls do not depend on each other).
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for c in range(n):
        grey = [_grey(frames[c, t]) for t in range(F)]
        for t in range(F - 1):
            forward = dis.calc(grey[t], grey[t + 1], None)  # [H, W, 2] pixels, x then y
            backward = dis.calc(grey[t + 1], grey[t], None)
            landed = pixels + forward
            round_trip = forward + _sample(backward, landed)
            error = np.linalg.norm(round_trip, axis=-1)
            inside = (landed[..., 0] > 0) & (landed[..., 0] < W) & (landed[..., 1] > 0) & (landed[..., 1] < H)
            flows[c, t] = forward
            valid[c, t] = (error <= max_error + 0.05 * np.linalg.norm(forward, axis=-1)) & inside
    to = dict(device=frames.device, dtype=torch.float32)
    return (torch.from_numpy(flows).permute(0, 1, 4, 2, 3).to(**to), torch.from_numpy(valid)[:, :, None].to(**to))


def flow_consistency_loss(
    projected: torch.Tensor,
    flow: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    visible: Optional[torch.Tensor] = None,
    size: float = 1.0,
) -> torch.Tensor:
    """Mean |p_t + flow_t(p_t) - p_{t+1}| / size over consecutive frames and vertices.

    Args:
        projected: [B, F, P, 2] each frame's pixel positions of P vertices.
        flow: [B, F - 1, 2, H, W] optical flow from frame t to t + 1 (pixels).
        valid: optional [B, F - 1, 1, H, W] flow reliability in [0, 1] (sampled at p_t).
        visible: optional [B, F, P] visibility; a vertex counts where visible in both frames.
        size: length the distances are divided by (the crop size S).

    Returns:
        The weighted mean distance; gradients reach both frames' projections.

    Raises:
        ValueError: projected, flow or visible of the wrong shape.
    """
    if projected.dim() != 4 or projected.shape[-1] != 2:
        raise ValueError(f"projected must be [B, F, P, 2], got {list(projected.shape)}")
    B, F, P, _ = projected.shape
    if flow.dim() != 5 or flow.shape[:3] != (B, F - 1, 2):
        raise ValueError(f"flow must be [B, F - 1, 2, H, W] = [{B}, {F - 1}, 2, H, W], got {list(flow.shape)}")
    start, end = projected[:, :-1].reshape(B * (F - 1), P, 2), projected[:, 1:].reshape(B * (F - 1), P, 2)
    moved = start + sample_colours(flow.reshape(B * (F - 1), 2, *flow.shape[-2:]).to(start), start)
    weights = None
    if valid is not None:
        weights = sample_colours(valid.reshape(B * (F - 1), 1, *valid.shape[-2:]).to(start), start.detach())[..., 0]
    if visible is not None:
        if visible.shape != (B, F, P):
            raise ValueError(f"visible must have shape {[B, F, P]}, got {list(visible.shape)}")
        both = (visible[:, :-1].to(start.dtype) * visible[:, 1:].to(start.dtype)).reshape(B * (F - 1), P)
        weights = both if weights is None else weights * both
    return weighted_mean(robust_norm(moved - end), weights) / size
