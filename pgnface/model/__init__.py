"""Morphable models (container, file loaders, built-in default, derived albedo), cameras
and the differentiable face renderer.

    from pgnface.model import MorphableModel
    model = MorphableModel.builtin()              # synthetic, nothing downloaded
    model = MorphableModel.load("sfm3448.npz")    # or any supported 3DMM file
"""

from .builtin import EXPRESSIONS, builtin_model
from .camera import FRONTAL, PerspectiveCamera, WeakPerspectiveCamera
from .loaders import load_model, save_model
from .morphable_model import MorphableModel
from .renderer import Rendering, render, vertex_visibility
from .shading import directional_gamma, sh_basis, sh_irradiance, vertex_normals

__all__ = ["EXPRESSIONS", "FRONTAL", "MorphableModel", "PerspectiveCamera", "Rendering",
           "WeakPerspectiveCamera", "builtin_model", "directional_gamma", "load_model", "render",
           "save_model", "sh_basis", "sh_irradiance", "vertex_normals", "vertex_visibility"]
