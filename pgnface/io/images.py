"""Images on disk: which files pgnface reads as images and videos, and the one image reader."""

from pathlib import Path
from typing import List

import cv2
import numpy as np

# Formats OpenCV reads (cv2.imread / cv2.VideoCapture); tuples, so a lookup
# that tries them in turn is deterministic.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_image(path: Path) -> bool:
    """Whether a path names an image by its suffix (any case).

    Args:
        path: a file path.

    Returns:
        True for one of IMAGE_SUFFIXES.
    """
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder) -> List[Path]:
    """The image files under a folder, searched recursively.

    Args:
        folder: the folder.

    Returns:
        Sorted paths.

    Raises:
        FileNotFoundError: `folder` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if is_image(p) and p.is_file())


def read_image(path) -> np.ndarray:
    """Reads an image file as RGB; grayscale and RGBA are converted, other bit depths scaled to 8 bits.

    Args:
        path: the image file.

    Returns:
        [H, W, 3] uint8 RGB.

    Raises:
        ValueError: the file is missing or not a readable image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image
