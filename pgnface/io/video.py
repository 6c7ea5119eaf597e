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
    """True for >= 2 images named one prefix + frame numbers of one width (frame_0000.jpg, frame_0001.jpg, ...)."""
    if len(files) < 2:
        return False
    parts = [FRAME_NAME.match(Path(f).stem) for f in files]
    if not all(parts):
        return False
    return len({(m.group(1), len(m.group(2))) for m in parts}) == 1


def folder_frames(files: Sequence[Path]) -> Iterator[Frame]:
    """(index, file stem, image or None) for the frame files, in order."""
    for index, path in enumerate(files):
        try:
            image = read_image(path)
        except ValueError:
            image = None
        yield index, Path(path).stem, image


def video_frames(path: Path) -> Iterator[Frame]:
    """(index, VIDEO_00012, image) for every decodable frame of a video file. ValueError if it cannot be opened."""
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
    """RGB frames of a video file or of a folder of frame images (sorted by name)."""
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
