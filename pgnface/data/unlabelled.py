"""Unlabelled real training data: faces in a folder of photos, and clips of a video.

Neither has labels: their batches get only the self-supervised losses
(photometric, landmark self-consistency, priors) and, for video clips, the
multi-frame losses. Faces are found by the face detector (pgnface.io.detect)
and framed as at inference time (``face_crop_box``); each draw jitters the
crop a little and may mirror it.

    photos = UnlabelledPhotos("photos/", size=120)
    video = VideoClips("frames/", size=120, frames=4)       # a frame folder or a video file
"""

from typing import List, Optional, Sequence

import numpy as np
import torch

from pgnface.io.crops import crop, face_crop_box, jittered_box
from pgnface.io.detect import detect_faces
from pgnface.io.images import image_files, read_image
from pgnface.io.video import read_frames


def _read_rgb(path) -> Optional[np.ndarray]:
    try:
        return read_image(path)
    except ValueError:
        return None


def _to_tensor(crops: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)


class UnlabelledPhotos:
    """Every detected face of every photo under a folder.

    Args:
        root: folder of images (searched recursively).
        size: crop size S.
        exclude: skip files whose name contains any of these strings.
        min_face: smallest face (detector box side, pixels).
    """

    def __init__(self, root, size: int, exclude: Sequence[str] = (), min_face: int = 40):
        self.size = int(size)
        self.images: List[np.ndarray] = []
        self.faces: List[tuple] = []  # (image index, crop box)
        for path in image_files(root):
            if any(word in path.name for word in exclude):
                continue
            image = _read_rgb(path)
            if image is None:
                continue
            boxes = detect_faces(image, min_size=min_face)
            if boxes:
                self.images.append(image)
                self.faces.extend((len(self.images) - 1, face_crop_box(b)) for b in boxes)
        if not self.faces:
            raise ValueError(f"no faces found in the images under {root} (RetinaFace, faces >= {min_face} px)")

    def __len__(self) -> int:
        return len(self.faces)

    def batch(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Random face crops, jittered, half of them mirrored.

        Args:
            n: how many crops.
            g: the random generator (CPU).

        Returns:
            [n, 3, S, S] float in [0, 1].
        """
        pick = torch.randint(len(self.faces), (n,), generator=g).tolist()
        r = torch.rand(n, 4, generator=g, dtype=torch.float64).numpy()
        crops = []
        for i, k in enumerate(pick):
            image_index, box = self.faces[k]
            face = crop(self.images[image_index], jittered_box(box, r[i]), self.size)
            crops.append(face[:, ::-1] if r[i, 3] < 0.5 else face)
        return _to_tensor([np.ascontiguousarray(c) for c in crops])


def track_boxes(frames: Sequence[np.ndarray], min_face: int = 40) -> np.ndarray:
    """One crop box per frame for the clip's person: the largest detection, smoothed.

    Frames without a detection take the nearest detected frame's box; a
    3-frame median removes single-frame detector jumps.

    Args:
        frames: [H, W, 3] uint8 RGB frames.
        min_face: smallest face side in pixels.

    Returns:
        [T, 4] (sx, sy, ex, ey) crop boxes.

    Raises:
        ValueError: no face in any frame.
    """
    boxes = [detect_faces(f, min_size=min_face) for f in frames]
    found = [i for i, b in enumerate(boxes) if b]
    if not found:
        raise ValueError("no face found in any frame of the video")
    raw = np.stack([face_crop_box(boxes[min(found, key=lambda j: abs(j - i))][0]) for i in range(len(frames))])
    padded = np.concatenate([raw[:1], raw, raw[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


class VideoClips:
    """Clips of consecutive frames of one video (one person).

    Args:
        source: a video file or a folder of frames.
        size: crop size S.
        frames: frames per clip F.
        max_stride: clips take every k-th frame, k random in [1, max_stride].
    """

    def __init__(self, source, size: int, frames: int, max_stride: int = 3):
        self.size, self.frames, self.max_stride = int(size), int(frames), max(1, int(max_stride))
        self.video = read_frames(source)
        if len(self.video) < frames:
            raise ValueError(f"video {source} has {len(self.video)} frames, fewer than a clip's {frames}")
        self.boxes = track_boxes(self.video)

    def batch(self, clips: int, g: torch.Generator) -> torch.Tensor:
        """Random clips; a clip shares its jitter and mirroring.

        Args:
            clips: how many clips.
            g: the random generator (CPU).

        Returns:
            [clips * F, 3, S, S] float in [0, 1], frame-major within each clip.
        """
        T, F = len(self.video), self.frames
        r = torch.rand(clips, 6, generator=g, dtype=torch.float64).numpy()
        crops = []
        for c in range(clips):
            stride = 1 + min(int(r[c, 4] * self.max_stride), (T - 1) // max(F - 1, 1) - 1, self.max_stride - 1)
            start = int(r[c, 5] * (T - (F - 1) * stride))
            for f in range(F):
                t = start + f * stride
                face = crop(self.video[t], jittered_box(self.boxes[t], r[c]), self.size)
                crops.append(np.ascontiguousarray(face[:, ::-1] if r[c, 3] < 0.5 else face))
        return _to_tensor(crops)
