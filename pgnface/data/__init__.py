"""Training and test data: synthetic faces with exact ground truth, labelled folders, unlabelled photos and video."""

from pgnface.data.photos import PhotoBackgrounds
from pgnface.data.synthetic import SyntheticConfig, SyntheticFaces

__all__ = ["PhotoBackgrounds", "SyntheticConfig", "SyntheticFaces"]
