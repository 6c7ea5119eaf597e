"""Reading video: frames of a video file or of a folder of numbered images."""

import re
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from pgnface.io.images import VIDEO_SUFFIXES, image_files, read_image

Frame = Tuple[int, str, Optional[np.ndarray]]  # index, stem, RGB image (None: unreadable)


FRAME_NAME = re.compile(r"^(.*?)(\d+)$")


def is_frame_sequence(files: Sequence[Path]) -> bool:
    """Whether files are numbered frames: >= 2 images named one prefix + frame numbers of one width.

    Args:
        files: image paths (frame_0000.jpg, frame_0001.jpg, ...).

    Returns:
        True for a frame sequence.
    """
    if len(files) < 2:
        return False
    parts = [FRAME_NAME.match(Path(f).stem) for f in files]
    if not all(parts):
        return False
    return len({(m.group(1), len(m.group(2))) for m in parts}) == 1


def folder_frames(files: Sequence[Path]) -> Iterator[Frame]:
    """Reads frame files in order.

    Args:
        files: the frame image paths.

    Yields:
        (index, file stem, [H, W, 3] uint8 RGB image or None when unreadable).
    """
    for index, path in enumerate(files):
        try:
            image = read_image(path)
        except ValueError:
            image = None
        yield index, Path(path).stem, image


def video_frames(path: Path) -> Iterator[Frame]:
    """Decodes a video file.

    Args:
        path: the video file.

    Yields:
        (index, ``<stem>_00012``, [H, W, 3] uint8 RGB image) for every decodable frame.

    Raises:
        ValueError: the video cannot be opened.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: the video cannot be opened")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, f"{Path(path).stem}_{index:05d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def read_frames(source) -> List[np.ndarray]:
    """All frames of a video file or of a folder of frame images (sorted by name).

    Args:
        source: a video file or a folder.

    Returns:
        [H, W, 3] uint8 RGB frames.

    Raises:
        FileNotFoundError: `source` is neither a folder nor a video file.
        ValueError: no readable frames.
    """
    source = Path(source)
    if source.is_dir():
        frames = [image for _, _, image in folder_frames(image_files(source)) if image is not None]
    elif source.suffix.lower() in VIDEO_SUFFIXES and source.is_file():
        try:
            frames = [image for _, _, image in video_frames(source)]
        except ValueError:  # cannot be opened: reported as no readable frames below
            frames = []
    else:
        raise FileNotFoundError(
            f"video source {source} is neither a folder of frames nor a video file "
            f"({', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    if not frames:
        raise ValueError(f"no readable frames in {source}")
    return frames
