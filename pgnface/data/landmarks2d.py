"""Real faces with manual 2D landmark labels: 300-W (AFW, HELEN) and YouTube Faces frames.

Both come as a folder with a ``landmarks.npz``: ``names`` (image paths relative
to the folder), ``pts68`` [N, 68, 2] in 0-based pixel-index coordinates
(iBUG-68 order) and a group array, ``subset`` (300-W: afw, helen_train,
helen_test) or ``split`` (YouTube Faces: train, test), from which the faces to
use are chosen. Each draw crops a face around its labelled landmark box the
way the synthetic faces are framed (box side / crop_scale of the crop), with
the scale and position jittered like a detector's box, mirrors half of them,
and moves the labels along (pixel centres at integer + 0.5).

The jaw points of these labels trace the visible face outline, not the 3D jaw:
pgnface.train.outline scores them accordingly. A per-source ``quality`` weight
(e.g. 1 for 300-W, 0.5 for YouTube Faces, whose labels are about twice as
noisy) travels with each face.

300-W (iBUG), AFW, HELEN and YouTube Faces are for non-commercial research use
only, and so is a network trained on them. Never train on a validation split
(300-W ``helen_test``) or on AFLW2000-3D.

    faces = Landmarks2DFaces("300w/", size=120, groups=("afw", "helen_train"))
    batch = faces.batch(16, torch.Generator().manual_seed(0))
"""

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from pgnface.io.crops import bounding_box, crop, jittered_box, square_frame
from pgnface.io.images import read_image
from pgnface.morphable.ibug68 import mirror_landmarks

GROUP_KEYS = ("subset", "split")
# Recorded as "data_terms" in every checkpoint of a network trained on these labels.
RESEARCH_ONLY = "trained on 300-W (iBUG: AFW, HELEN) and/or YouTube Faces labels: non-commercial research use only"


class Landmarks2DFaces:
    """Faces with 68 2D landmark labels from a folder holding a ``landmarks.npz``.

    Args:
        root: the folder (300-W or YouTube Faces layout, see the module docstring).
        size: crop size S.
        groups: the subsets / splits to use (values of the npz's ``subset`` or ``split``).
        crop_scale: crop side / the labelled landmark box's longer side, before jitter.
        quality: the weight of these labels in the loss.
        jitter_scale, jitter_shift: crop box scale (+-) and shift (+- of the side) jitter.

    Raises:
        FileNotFoundError: no ``landmarks.npz`` in `root`.
        ValueError: malformed arrays, or no face in `groups`.
    """

    def __init__(
        self,
        root,
        size: int,
        groups: Sequence[str],
        crop_scale: float = 1.4,
        quality: float = 1.0,
        jitter_scale: float = 0.08,
        jitter_shift: float = 0.05,
    ):
        self.root = Path(root)
        path = self.root / "landmarks.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (a 300-W or YouTube Faces folder with landmarks.npz expected)")
        if not crop_scale > 1.0:
            raise ValueError(f"crop_scale must be > 1 (crop side / landmark box side), got {crop_scale}")
        if not quality > 0.0:
            raise ValueError(f"quality must be positive, got {quality}")
        with np.load(path) as data:
            key = next((k for k in GROUP_KEYS if k in data), None)
            if key is None or "names" not in data or "pts68" not in data:
                raise ValueError(f"{path}: expected arrays names, pts68 and one of {GROUP_KEYS}")
            names, group, pts = data["names"], data[key].astype(str), np.asarray(data["pts68"], np.float64)
        if pts.ndim != 3 or pts.shape[1:] != (68, 2) or len(pts) != len(names):
            raise ValueError(f"{path}: pts68 must be [{len(names)}, 68, 2], got {list(pts.shape)}")
        keep = np.isin(group, list(groups))
        if not keep.any():
            raise ValueError(f"{path}: no faces in {key} {list(groups)} (it has {sorted(set(group))})")
        self.names = [str(n) for n in names[keep]]
        self.landmarks = pts[keep] + 0.5  # 0-based pixel indices -> pixel centres at integer + 0.5
        self.size, self.crop_scale, self.quality = int(size), float(crop_scale), float(quality)
        self.jitter_scale, self.jitter_shift = float(jitter_scale), float(jitter_shift)

    def __len__(self) -> int:
        return len(self.names)

    def face(self, index: int, r: np.ndarray):
        """Face `index` cropped with the jitter numbers r [3] in [0, 1): (uint8 [S, S, 3], [68, 2] crop pixels)."""
        lm = self.landmarks[index]
        cx, cy, side = square_frame(bounding_box(lm), self.crop_scale)
        square = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        box = jittered_box(square, r, self.jitter_scale, self.jitter_shift)
        k = self.size / (box[2] - box[0])
        return crop(read_image(self.root / self.names[index]), box, self.size), (lm - box[:2]) * k

    def batch(self, n: int, g: torch.Generator) -> Dict[str, torch.Tensor]:
        """n random faces (deterministic for the generator's state).

        Returns:
            image [n, 3, S, S] RGB in [0, 1], landmarks2d [n, 68, 2] crop pixels
            (iBUG-68 order, of the mirrored crop where mirrored), label_weight [n]
            (the source's quality).
        """
        pick = torch.randint(len(self), (n,), generator=g).tolist()
        r = torch.rand(n, 4, generator=g, dtype=torch.float64).numpy()
        images, marks = [], []
        for i, index in enumerate(pick):
            image, lm = self.face(index, r[i, :3])
            images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
            marks.append(torch.from_numpy(lm))
        image = torch.stack(images).float().div(255)
        landmarks = torch.stack(marks).float()
        flip = torch.from_numpy(r[:, 3] < 0.5)
        image = torch.where(flip[:, None, None, None], image.flip(-1), image)
        landmarks = torch.where(flip[:, None, None], mirror_landmarks(landmarks, self.size), landmarks)
        return {"image": image, "landmarks2d": landmarks, "label_weight": torch.full((n,), self.quality)}
