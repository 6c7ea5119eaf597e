"""Differentiable face-reconstruction ops with CUDA kernels and C++ CPU twins.

Each op is a torch custom op (torch.ops.pgnface.<name>) with a fake kernel and an
autograd formula, so it works under torch.compile(fullgraph=True), torch.export
and CUDA graphs. `pgnface.ops.reference` holds the pure-PyTorch versions the
tests hold the kernels against.

Ops:
    synthesize: fused 3DMM vertex synthesis s * R (mean + basis @ c) + t.
    rasterize: batched triangle rasterization with differentiable barycentrics.
    interpolate: per-vertex attributes at every pixel of rasterized fragments.
    svd3x3: batched 3x3 SVD with a gradient that survives repeated singular values.
    similarity_align: weighted Umeyama alignment dst ~ scale * R @ src + t (plus
        apply_similarity, rotation_to_angles and landmarks_to_pose helpers).
"""

from .._ext import cuda_built
from . import reference
from .interpolate import interpolate
from .rasterize import Fragments, clip_from_pixels, rasterize
from .synthesize import synthesize
from .svd3x3 import svd3x3
from .similarity_align import similarity_align
from .pose import Pose, apply_similarity, landmarks_to_pose, rotation_to_angles

__all__ = ["Fragments", "clip_from_pixels", "cuda_built", "interpolate", "rasterize", "reference",
           "synthesize"]
__all__ += ["svd3x3", "similarity_align", "Pose", "apply_similarity", "landmarks_to_pose",
            "rotation_to_angles"]
