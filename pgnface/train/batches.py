"""Training batches mixed by weight: on-the-fly synthetic faces and clips, a
300W-LP-layout folder (labelled), unlabelled photos and unlabelled video clips,
and real faces with 2D labels (300-W, YouTube Faces).

Every batch is a pure function of (seed, step, rank): resuming at step k
replays exactly the data an uninterrupted run would have seen, and DDP
ranks see different faces.
"""

from typing import Dict

import torch

from pgnface.data import PhotoBackgrounds, SyntheticFaces
from pgnface.data.augment import augment_images
from pgnface.data.labelled_folder import LabelledFolder
from pgnface.data.landmarks2d import Landmarks2DFaces
from pgnface.data.unlabelled import UnlabelledPhotos, VideoClips
from pgnface.morphable import MorphableModel
from pgnface.train.config import KINDS, DataConfig, kind_in_use, real_groups
from pgnface.train.equivariance import random_warps, warp_images
from pgnface.train.flow import clip_flow


def centre_depth(vertices: torch.Tensor, landmark_vertices: torch.Tensor) -> torch.Tensor:
    """Shifts crop-frame vertices [B, N, 3] in depth so that their landmarks have mean depth 0.

    The synthetic (and 300W-LP-like) 3D landmarks are depth-centred this way,
    and so is the PGN reconstruction (its pose is fitted to them).
    """
    offset = vertices[:, landmark_vertices, 2:].mean(1, keepdim=True)
    return torch.cat([vertices[..., :2], vertices[..., 2:] - offset], -1)


class TrainBatches:
    """Draws the batch of a training step.

    Args:
        model: the 3DMM (on the training device).
        config: DataConfig.
        seed: the run's seed.
        rank, world_size: this process's DDP rank and the number of processes.
        equivariant: unlabelled batches also carry a randomly warped copy of
            their crops (for loss.equivariance; see pgnface.train.equivariance).
        flow: video batches also carry the optical flow between consecutive
            frames (for loss.flow; see pgnface.train.flow).
    """

    def __init__(
        self,
        morphable: MorphableModel,
        config: DataConfig,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        equivariant: bool = False,
        flow: bool = False,
    ):
        self.morphable, self.config, self.equivariant, self.flow = morphable, config, equivariant, flow
        self.seed, self.rank, self.world_size = seed, rank, world_size
        photos = (
            PhotoBackgrounds.from_folder(config.backgrounds, config.size, detect=config.background_faces)
            if config.backgrounds
            else None
        )
        self.faces = SyntheticFaces(morphable, config.synthetic, seed=seed, photos=photos)
        self.folder = (
            LabelledFolder(config.folder, config.size, config.crop_scale) if kind_in_use(config, "folder") else None
        )
        self.photos = UnlabelledPhotos(config.images, config.size) if kind_in_use(config, "images") else None
        self.video = (
            VideoClips(config.video, config.size, config.clip_frames, config.video_stride)
            if kind_in_use(config, "video")
            else None
        )
        self.real300w = (
            Landmarks2DFaces(config.real300w, config.size, real_groups(config.real300w_groups), config.crop_scale)
            if kind_in_use(config, "real300w")
            else None
        )
        self.ytf = (
            Landmarks2DFaces(
                config.ytf, config.size, real_groups(config.ytf_groups), config.crop_scale, quality=config.ytf_quality
            )
            if kind_in_use(config, "ytf")
            else None
        )
        self.weights = torch.tensor(
            [getattr(config, f"{kind}_weight") if kind_in_use(config, kind) else 0.0 for kind in KINDS],
            dtype=torch.float64,
        )

    def _key(self, step: int) -> int:
        """The step whose data this step sees (steps cycle with data.fixed_batches)."""
        return step % self.config.fixed_batches if self.config.fixed_batches else step

    def kind(self, step: int) -> str:
        """The batch kind of this step: one of KINDS.

        The same on every rank, so that all ranks run the same losses.
        """
        if int((self.weights > 0).sum()) == 1:
            return KINDS[int(self.weights.argmax())]
        g = torch.Generator().manual_seed(self.seed * 7919 + self._key(step))
        return KINDS[int(torch.multinomial(self.weights, 1, generator=g))]

    def batch(self, step: int, batch_size: int) -> Dict[str, torch.Tensor]:
        """The batch of `step`.

        Returns:
            dict with image [n, 3, S, S], frames (1, or F for clips: n = clips * F,
            frame-major within a clip) and labelled (bool); labelled batches also
            landmarks3d [n, L, 3]; synthetic batches also vertices [n, N, 3]
            (depth-centred like the landmarks), id / exp / albedo [n, K] and
            landmark_visible [n, L]. Unlabelled photo and video batches hold only
            the images, plus warped_image [n, 3, S, S] and warp (a Warp) when
            the batches are equivariant, and video batches flow [clips, F - 1, 2, S, S]
            and flow_valid [clips, F - 1, 1, S, S] (pgnface.train.flow) with flow on.
            Real 2D-labelled batches (real300w, ytf) are unlabelled batches plus
            landmarks2d [n, 68, 2] and label_weight [n] (pgnface.data.landmarks2d).
        """
        stream = self._key(step) * self.world_size + self.rank
        morphable, kind = self.morphable, self.kind(step)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + stream)
        if kind == "images":
            return self._unlabelled(self.photos.batch(batch_size, g).to(morphable.device), 1, g)
        if kind == "video":
            F = self.config.clip_frames
            batch = self._unlabelled(self.video.batch(max(1, batch_size // F), g).to(morphable.device), F, g)
            if self.flow:
                images = batch["image"]
                batch["flow"], batch["flow_valid"] = clip_flow(images.reshape(-1, F, *images.shape[1:]))
            return batch
        if kind in ("real300w", "ytf"):
            real = (self.real300w if kind == "real300w" else self.ytf).batch(batch_size, g)
            batch = self._unlabelled(self._augment(real["image"].to(morphable.device), g, 1), 1, g)
            batch.update(
                landmarks2d=real["landmarks2d"].to(morphable.device),
                label_weight=real["label_weight"].to(morphable.device),
            )
            return batch
        if kind == "folder":
            indices = torch.randint(len(self.folder), (batch_size,), generator=g).tolist()
            out = self.folder.batch(indices, morphable.landmark_ids, morphable.device)
            out["image"] = self._augment(out["image"], g, 1)
            return {**out, "frames": 1, "labelled": True}
        if kind == "single":
            s = self.faces.sample(batch_size, seed=stream)
            frames, labelled = 1, True
        else:
            frames = self.config.clip_frames
            clips = self.faces.sample_clips(max(1, batch_size // frames), frames, seed=stream)
            s = {
                k: v.reshape(-1, *v.shape[2:]) if k not in ("id", "albedo") else v.repeat_interleave(frames, 0)
                for k, v in clips.items()
            }
            labelled = self.config.clip_labels
        return {
            "image": self._augment(s["image"], g, frames),
            "landmarks3d": s["landmarks3d"],
            "vertices": centre_depth(s["vertices"], morphable.landmark_vertices),
            "id": s["id"],
            "exp": s["exp"],
            "albedo": s["albedo"],
            "landmark_visible": s["landmark_visible"],
            "frames": frames,
            "labelled": labelled,
        }

    def _unlabelled(self, images: torch.Tensor, frames: int, g: torch.Generator) -> Dict:
        batch = {"image": images, "frames": frames, "labelled": False}
        if self.equivariant:
            warp = random_warps(images.shape[0], images.shape[-1], g)
            batch.update(warp=warp, warped_image=warp_images(images, warp))
        return batch

    def _augment(self, images: torch.Tensor, g: torch.Generator, group: int) -> torch.Tensor:
        return augment_images(images, g, self.config.augment, group) if self.config.augment > 0 else images
