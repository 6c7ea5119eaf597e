"""Clips (a video file or a folder of numbered frames): one face per frame, one identity per clip.

Each frame keeps only its largest face (one person per clip: faces of
bystanders, posters or screens in the frame are dropped). Once
every frame is reconstructed, the identity coefficients are averaged over the
frames where a face was found and every frame's mesh is re-synthesized with
that shared identity and its own expression and pose. The frames are read
twice (reconstruct, then write), so memory does not grow with the clip's
length beyond the per-frame coefficients and landmarks.
"""

from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import cv2
import numpy as np

from pgnface.apps.pipeline import FaceResult, ReconstructionPipeline, write_face
from pgnface.io.video import Frame

# Frame rates the overlay video may have: OpenCV's writer hangs on an infinite rate and fails
# silently on huge ones, and no player shows more than a few hundred frames a second.
FPS_RANGE = (0.1, 1000.0)


def check_fps(fps: float) -> float:
    """Validates a frame rate for the overlay video.

    Args:
        fps: frames per second.

    Returns:
        `fps` as a float.

    Raises:
        ValueError: not a number in FPS_RANGE (NaN and Inf included).
    """
    low, high = FPS_RANGE
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number in [{low:g}, {high:g}] frames per second, got {fps!r}") from None
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"fps must be in [{low:g}, {high:g}] frames per second, got {fps!r}")
    return value


def open_video_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """Opens an MP4 writer.

    Args:
        path: the video file.
        fps: frames per second (see check_fps).
        width: frame width in pixels.
        height: frame height in pixels.

    Returns:
        The opened cv2.VideoWriter.

    Raises:
        ValueError: fps outside FPS_RANGE.
        OSError: OpenCV cannot open it (no encoder, unwritable folder, bad size).
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), check_fps(fps), (width, height))
    if not writer.isOpened():
        writer.release()
        raise OSError(f"{path}: OpenCV could not open an MP4 writer ({width} x {height} at {fps:g} fps)")
    return writer


def reconstruct_clip(
    recon: ReconstructionPipeline,
    frames: Iterator[Frame],
    boxes_for: Callable[[int, str], object],
    report: Callable[[str], None],
) -> List[Optional[FaceResult]]:
    """First pass: the largest face of every frame (None where there is none), without dense vertices.

    Args:
        recon: the reconstructor.
        frames: the clip's frames (folder_frames / video_frames).
        boxes_for: (index, stem) -> that frame's boxes, or None to run the detector.
        report: called with one line per frame that has a problem.

    Returns:
        One entry per frame; FaceResult.vertices is None (see share_identity).
    """
    results = []
    for index, stem, image in frames:
        found = None
        if image is None:
            report(f"{stem}: not a readable image")
        else:
            try:
                faces = recon.faces(image, boxes_for(index, stem), largest_only=True)
                found = replace(faces[0], vertices=None) if faces else None
                if found is None:
                    report(f"{stem}: no face found")
            except (ValueError, RuntimeError) as err:
                report(f"{stem}: {err}")
        results.append(found)
    return results


def shared_identity(results: Sequence[Optional[FaceResult]]) -> Optional[np.ndarray]:
    """The mean identity coefficients [Ki] over the frames with a face, or None if there is none."""
    ids = [r.coefficients["id"] for r in results if r is not None]
    return np.mean(ids, axis=0).astype(np.float32) if ids else None


def write_clip(
    recon: ReconstructionPipeline,
    frames: Iterator[Frame],
    results: Sequence[Optional[FaceResult]],
    identity: np.ndarray,
    out_dir: Path,
    name: str,
    fps: float,
) -> int:
    """Second pass: per-frame meshes with the shared identity, overlays and NAME_overlay.mp4.

    Returns:
        The number of faces written.

    Raises:
        ValueError: `fps` outside FPS_RANGE (before anything is written).
        OSError: the video or an overlay image cannot be written.
    """
    check_fps(fps)
    triangles = recon.morphable.triangles.cpu().numpy()
    writer, written = None, 0
    try:
        for (_index, stem, image), result in zip(frames, results):
            if image is None:
                continue
            faces = [recon.with_identity(result, identity)] if result is not None else []
            for face in faces:
                write_face(face, triangles, out_dir, f"{stem}_face0")
            written += len(faces)
            overlay = recon.overlay(image, faces)
            if not cv2.imwrite(str(out_dir / f"{stem}_overlay.png"), overlay):
                raise OSError(f"{out_dir / f'{stem}_overlay.png'}: could not be written")
            if writer is None:
                h, w = overlay.shape[:2]
                writer = open_video_writer(out_dir / f"{name}_overlay.mp4", fps, w, h)
            if overlay.shape[:2] == (h, w):  # the video keeps the first frame's size
                writer.write(overlay)
    finally:
        if writer is not None:
            writer.release()
    np.savez(
        out_dir / f"{name}_identity.npz",
        id=identity,
        frames=np.array([i for i, r in enumerate(results) if r is not None]),
    )
    return written
