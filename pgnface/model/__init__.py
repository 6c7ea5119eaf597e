"""Morphable models: the container, file loaders, the built-in default, derived albedo.

    from pgnface.model import MorphableModel
    model = MorphableModel.builtin()              # synthetic, nothing downloaded
    model = MorphableModel.load("sfm3448.npz")    # or any supported 3DMM file
"""

from .builtin import EXPRESSIONS, builtin_model
from .loaders import load_model, save_model
from .morphable_model import MorphableModel

__all__ = ["EXPRESSIONS", "MorphableModel", "builtin_model", "load_model", "save_model"]
