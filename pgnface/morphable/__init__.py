"""Morphable models (container, file loaders, built-in default, derived albedo), cameras
and the differentiable face renderer.

    from pgnface.morphable import MorphableModel
    model = MorphableModel.builtin()              # synthetic, nothing downloaded
    model = MorphableModel.load("sfm3448.npz")    # or any supported 3DMM file
"""

from pgnface.morphable.builtin import EXPRESSIONS
from pgnface.morphable.camera import FRONTAL, PerspectiveCamera, WeakPerspectiveCamera
from pgnface.morphable.morphable_model import MorphableModel
from pgnface.morphable.renderer import Rendering, render, vertex_visibility
from pgnface.morphable.shading import (
    directional_gamma,
    sh_basis,
    sh_irradiance,
    vertex_normals,
)

__all__ = [
    "EXPRESSIONS",
    "FRONTAL",
    "MorphableModel",
    "PerspectiveCamera",
    "Rendering",
    "WeakPerspectiveCamera",
    "directional_gamma",
    "render",
    "sh_basis",
    "sh_irradiance",
    "vertex_normals",
    "vertex_visibility",
]
