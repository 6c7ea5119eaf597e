"""Data: the synthetic face generator and on-disk dataset writers."""

from .synthetic import SyntheticConfig, SyntheticFaces, rotation_from_angles

__all__ = ["SyntheticConfig", "SyntheticFaces", "rotation_from_angles"]
