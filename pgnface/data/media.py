"""Which files pgnface reads as images and as videos (one list for every command)."""

from pathlib import Path
from typing import List

# Formats OpenCV reads (cv2.imread / cv2.VideoCapture); tuples, so a lookup
# that tries them in turn is deterministic.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_image(path: Path) -> bool:
    """True when `path` has an image suffix (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder) -> List[Path]:
    """Sorted image files under `folder`, searched recursively.

    Raises:
        FileNotFoundError: `folder` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if is_image(p) and p.is_file())
