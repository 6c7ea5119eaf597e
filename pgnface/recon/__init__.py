"""Reconstruction of faces in images and videos with a trained PGN network."""

from ..data.detect import detect_faces, face_crop_box
from .reconstruct import FaceResult, Reconstructor

__all__ = ["FaceResult", "Reconstructor", "detect_faces", "face_crop_box"]
