"""Data: the synthetic face generator and on-disk dataset writers."""

from .media import image_files
from .photos import PhotoBackgrounds
from .synthetic import SyntheticConfig, SyntheticFaces, rotation_from_angles

__all__ = ["PhotoBackgrounds", "image_files", "SyntheticConfig", "SyntheticFaces", "rotation_from_angles"]
