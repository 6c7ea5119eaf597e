"""Real photographs as backgrounds for synthetic faces.

Rendered faces pasted over smooth noise look nothing like a photo's
surroundings (hair, skin, clothes, rooms). ``PhotoBackgrounds`` cuts random
patches (random size, position and mirror) out of a few photographs and
resizes them to the crop size; ``SyntheticFaces`` draws its background from
them with a given probability. Given face boxes, half of the patches are
framed on a real face the way training crops are framed, so the rendered
face lands over a real one: the hair, ears, neck and shoulders around it are
a real person's.

    pool = PhotoBackgrounds.from_folder("photos/", size=120)
    faces = SyntheticFaces(model, config, photos=pool)
"""

from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch

from pgnface.io.crops import crop, face_crop_box
from pgnface.io.detect import detect_faces
from pgnface.io.images import image_files, read_image


class PhotoBackgrounds:
    """Random patches of photographs, as [n, S, S, 3] float backgrounds in [0, 1].

    Args:
        photos: [H, W, 3] uint8 RGB images (any sizes, at least 16 px a side).
        size: output side S.
        min_fraction: smallest patch side as a fraction of the photo's shorter side.
        face_boxes: optional per photo, a list of square crop boxes (sx, sy, ex, ey)
            in its pixels framing a face (pgnface.io.crops.face_crop_box).
    """

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        size: int,
        min_fraction: float = 0.2,
        face_boxes: Optional[Sequence[Sequence[np.ndarray]]] = None,
    ):
        if not photos:
            raise ValueError("PhotoBackgrounds needs at least one photo")
        if face_boxes is not None and len(face_boxes) != len(photos):
            raise ValueError(f"face_boxes must have one list per photo ({len(photos)}), got {len(face_boxes)}")
        self.size, self.min_fraction = int(size), float(min_fraction)
        self.photos, self.faces = [], []
        for i, photo in enumerate(photos):
            if photo.ndim != 3 or photo.shape[2] != 3 or min(photo.shape[:2]) < 16:
                raise ValueError(f"photo {i} must be [H, W, 3] with sides >= 16 px, got {tuple(photo.shape)}")
            if face_boxes is not None:
                # Framed faces are cut from the full-resolution photo once, with a margin for jitter.
                self.faces.extend(_face_patch(photo, box, size) for box in face_boxes[i])
            # Keep at most 2 S pixels on the shorter side: patches are resized to S anyway.
            shrink = min(1.0, 2.0 * size / min(photo.shape[:2]))
            if shrink < 1.0:
                photo = cv2.resize(photo, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            self.photos.append(torch.from_numpy(np.ascontiguousarray(photo)).float().div(255))

    @classmethod
    def from_folder(
        cls,
        folder,
        size: int,
        exclude: Sequence[str] = (),
        detect: bool = False,
        hide_faces: bool = True,
        tilted: bool = True,
    ) -> "PhotoBackgrounds":
        """All readable images under `folder`, except files whose name contains one of `exclude`.

        Args:
            detect: use the faces the detector (pgnface.io.detect) finds for face-framed
                patches (the photos then keep their faces: hide_faces is ignored).
            hide_faces: paint over the faces the detector finds before cutting random
                patches. A real face in the background of a
                training image teaches the network that real faces are clutter.
            tilted: also find heads tilted by +-20 degrees, and leave out photos
                whose heads cover most of them (see hide_detected_faces); False
                searches upright heads only and keeps every photo.

        Returns:
            The PhotoBackgrounds.

        Raises:
            FileNotFoundError: `folder` is not a directory.
            ValueError: no usable photos in it.
        """

        photos, boxes = [], []
        for path in image_files(folder):
            if any(word in path.name for word in exclude):
                continue
            try:
                rgb = read_image(path)
            except ValueError:
                continue
            if min(rgb.shape[:2]) < 16:
                continue
            photo = (
                hide_detected_faces(
                    rgb, max_side=2 * size, tilts=(-20.0, 20.0) if tilted else (), max_hidden=0.8 if tilted else 1.0
                )
                if hide_faces and not detect
                else rgb
            )
            if photo is None:  # a face close-up: hiding its face leaves nothing
                continue
            boxes.append([face_crop_box(b) for b in detect_faces(rgb)] if detect else [])
            photos.append(photo)
        if not photos:
            raise ValueError(
                f"no usable photos in {folder} (readable jpg/png/bmp, at least 16 px a side, not a face "
                "close-up: their faces are painted out)"
            )
        return cls(photos, size, face_boxes=boxes if detect else None)

    def __len__(self) -> int:
        return len(self.photos)

    def draw(self, g: torch.Generator, n: int, device=None) -> torch.Tensor:
        """Random patches, deterministic for the generator's state.

        The random numbers come from `g` (any device); the patches are cut on
        the CPU and moved to `device`.

        Args:
            g: the random generator.
            n: how many patches.
            device: where the patches go (the CPU if None).

        Returns:
            [n, S, S, 3] float in [0, 1].
        """
        S = self.size
        r = torch.rand(n, 8, generator=g, device=g.device).cpu().double().numpy()
        out = torch.empty(n, S, S, 3)
        for i in range(n):
            if self.faces and r[i, 5] < 0.5:
                out[i] = self._framed_face(r[i])
                continue
            photo = self.photos[min(int(r[i, 0] * len(self.photos)), len(self.photos) - 1)]
            H, W = photo.shape[:2]
            side = max(2, int(round(min(H, W) * (self.min_fraction + (1 - self.min_fraction) * r[i, 1]))))
            y0 = int(r[i, 2] * (H - side + 1))
            x0 = int(r[i, 3] * (W - side + 1))
            patch = photo[y0 : y0 + side, x0 : x0 + side].permute(2, 0, 1)[None]
            patch = torch.nn.functional.interpolate(
                patch, size=(S, S), mode="bilinear", align_corners=False, antialias=side > S
            )[0].permute(1, 2, 0)
            out[i] = patch.flip(1) if r[i, 4] < 0.5 else patch
        return out.clamp(0, 1).to(device if device is not None else g.device)

    def _framed_face(self, r: np.ndarray) -> torch.Tensor:
        """A face patch [S, S, 3]: scale +-10%, shift +-6% of the side, mirrored half the time."""
        patch = self.faces[min(int(r[6] * len(self.faces)), len(self.faces) - 1)]
        S, P = self.size, patch.shape[0]  # the crop box spans S of the patch's P = 1.25 S pixels
        side = S * (1 + 0.1 * (2 * r[1] - 1))
        x0 = (P - side) / 2 + 0.06 * side * (2 * r[2] - 1)
        y0 = (P - side) / 2 + 0.06 * side * (2 * r[3] - 1)
        x0, y0 = int(min(max(x0, 0), P - side)), int(min(max(y0, 0), P - side))
        side = int(side)
        out = torch.nn.functional.interpolate(
            patch[y0 : y0 + side, x0 : x0 + side].permute(2, 0, 1)[None],
            size=(S, S),
            mode="bilinear",
            align_corners=False,
        )[0].permute(1, 2, 0)
        return out.flip(1) if r[4] < 0.5 else out


def _face_patch(photo: np.ndarray, box: np.ndarray, size: int) -> torch.Tensor:
    """The crop box enlarged 1.25x, resampled to [P, P, 3] float with P = 1.25 S (zeros outside the photo)."""

    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 1.25 * (x1 - x0) / 2
    P = int(round(1.25 * size))
    patch = crop(photo, np.array([cx - half, cy - half, cx + half, cy + half]), P)
    return torch.from_numpy(np.ascontiguousarray(patch)).float().div(255)


def hide_detected_faces(
    photo: np.ndarray, max_side: int = 256, tilts: Sequence[float] = (-20.0, 20.0), max_hidden: float = 0.8
) -> Optional[np.ndarray]:
    """The photo with every face the detector (pgnface.io.detect) finds painted over by inpainting, heads and all.

    RetinaFace finds heads rolled by up to about 30 degrees; the shrunk photo is also
    searched turned by each angle in `tilts` (degrees), so that a head rolled further
    does not stay in the backgrounds.

    Args:
        photo: [H, W, 3] uint8 RGB.
        max_side: the photo is shrunk to at most this many pixels on its shorter side.
        tilts: extra search angles in degrees.
        max_hidden: the largest fraction of the photo the heads may cover.

    Returns:
        [h, w, 3] uint8 RGB (shrunk), or None when the heads cover more than
        `max_hidden` of the photo (a face close-up: nothing is left to use).
    """

    shrink = min(1.0, max_side / min(photo.shape[:2]))
    small = cv2.resize(photo, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA) if shrink < 1 else photo.copy()
    boxes = [face_crop_box(box) * shrink for box in detect_faces(photo)]
    boxes += [face_crop_box(box) for box in _tilted_faces(small, tilts)]
    mask = np.zeros(small.shape[:2], np.uint8)
    for x0, y0, x1, y1 in boxes:
        # The crop box is sqrt(2) x the landmark box (brows to chin): the head with its hair
        # reaches about 0.8 of the box's side above its centre and 0.7 to either side.
        centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2 - 0.05 * (y1 - y0))))
        axes = (int(round(0.7 * (x1 - x0))), int(round(0.85 * (y1 - y0))))
        cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 255, -1)
    if not mask.any():
        return small
    if (mask > 0).mean() > max_hidden:
        return None
    return cv2.inpaint(small, mask, 5, cv2.INPAINT_TELEA)


def _tilted_faces(image: np.ndarray, tilts: Sequence[float], min_size: int = 24) -> List[np.ndarray]:
    """Boxes [x0, y0, x1, y1] in `image` of faces found in copies of it turned by each tilt.

    Each box is the axis-aligned bounding box of the found box turned back, so it
    encloses the tilted face.
    """

    h, w = image.shape[:2]
    found = []
    for angle in tilts:
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        back = cv2.invertAffineTransform(turn)
        turned = cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
        for x0, y0, x1, y1 in detect_faces(turned, min_size=min_size):
            corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x1, y1, 1.0], [x0, y1, 1.0]]) @ back.T
            found.append(np.concatenate([corners.min(0), corners.max(0)]))
    return found
