"""Training batches from on-the-fly synthetic faces (single images and clips, mixed by weight).

Every batch is a pure function of (seed, step, rank): resuming at step k
replays exactly the data an uninterrupted run would have seen, and DDP
ranks see different faces.
"""

from typing import Dict

import torch

from ..data import SyntheticConfig, SyntheticFaces
from ..model import MorphableModel
from .config import DataConfig


def centre_depth(vertices: torch.Tensor, landmark_vertices: torch.Tensor) -> torch.Tensor:
    """Shifts crop-frame vertices [B, N, 3] in depth so that their landmarks have mean depth 0.

    The synthetic (and 300W-LP-like) 3D landmarks are depth-centred this way,
    and so is the PGN reconstruction (its pose is fitted to them).
    """
    offset = vertices[:, landmark_vertices, 2:].mean(1, keepdim=True)
    return torch.cat([vertices[..., :2], vertices[..., 2:] - offset], -1)


class SyntheticBatches:
    """Draws the batch of a training step.

    Args:
        model: the 3DMM (on the training device).
        config: DataConfig.
        seed: the run's seed.
        rank, world_size: this process's DDP rank and the number of processes.
    """

    def __init__(self, model: MorphableModel, config: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        self.model, self.config = model, config
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.faces = SyntheticFaces(model, SyntheticConfig(size=config.size, yaw_max=config.yaw_max), seed=seed)

    def _key(self, step: int) -> int:
        """The step whose data this step sees (steps cycle with data.fixed_batches)."""
        return step % self.config.fixed_batches if self.config.fixed_batches else step

    def kind(self, step: int) -> str:
        """"single" or "clip" for this step: the same on every rank (so DDP ranks run the same losses)."""
        cfg = self.config
        step = self._key(step)
        if cfg.clip_weight <= 0:
            return "single"
        if cfg.single_weight <= 0:
            return "clip"
        g = torch.Generator().manual_seed(self.seed * 7919 + step)
        p_clip = cfg.clip_weight / (cfg.single_weight + cfg.clip_weight)
        return "clip" if float(torch.rand((), generator=g)) < p_clip else "single"

    def batch(self, step: int, batch_size: int) -> Dict[str, torch.Tensor]:
        """The batch of `step`.

        Returns:
            dict with image [n, 3, S, S], landmarks3d [n, L, 3], vertices [n, N, 3]
            (depth-centred like the landmarks), id / exp / albedo [n, K],
            landmark_visible [n, L]; plus frames (1, or F for clips: n = clips * F,
            frame-major within a clip) and labelled (bool).
        """
        stream = self._key(step) * self.world_size + self.rank
        model = self.model
        if self.kind(step) == "single":
            s = self.faces.sample(batch_size, seed=stream)
            frames, labelled = 1, True
        else:
            frames = self.config.clip_frames
            clips = self.faces.sample_clips(max(1, batch_size // frames), frames, seed=stream)
            s = {k: v.reshape(-1, *v.shape[2:]) if k not in ("id", "albedo") else v.repeat_interleave(frames, 0)
                 for k, v in clips.items()}
            labelled = self.config.clip_labels
        return {"image": s["image"], "landmarks3d": s["landmarks3d"],
                "vertices": centre_depth(s["vertices"], model.landmark_vertices),
                "id": s["id"], "exp": s["exp"], "albedo": s["albedo"], "landmark_visible": s["landmark_visible"],
                "frames": frames, "labelled": labelled}
