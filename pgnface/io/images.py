"""Images on disk: which files pgnface reads as images and videos, and the one image reader."""

from pathlib import Path
from typing import List

import cv2
import numpy as np

# Formats OpenCV reads (cv2.imread / cv2.VideoCapture); tuples, so a lookup
# that tries them in turn is deterministic.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def truncation(data: bytes) -> str:
    """What a JPEG or PNG file's bytes lack at their end.

    A JPEG's entropy-coded data never contains the end-of-image marker FFD9
    (a 0xFF byte there is followed by 0x00 or a restart marker), so a whole
    file has one after its last start-of-scan marker FFDA; a PNG ends with an
    IEND chunk. Either may be followed by trailing bytes some cameras add.

    Args:
        data: the file's bytes.

    Returns:
        The missing part's name, or "" when the file is complete (or not a JPEG or PNG).
    """
    if data[:3] == b"\xff\xd8\xff":
        scan = data.rfind(b"\xff\xda")
        return "" if scan >= 0 and data.find(b"\xff\xd9", scan) >= 0 else "JPEG end-of-image marker"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "" if data.rfind(b"IEND") >= 0 else "PNG IEND chunk"
    return ""


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
        ValueError: the file is missing or not a readable image, or it is a JPEG
            or PNG that is cut short (OpenCV would decode the part that is there
            and fill the rest with grey).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err.strerror or err})") from None
    missing_end = truncation(data)
    if missing_end:
        raise ValueError(f"{path}: the image file is truncated (no {missing_end}); it may still be downloading")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
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
