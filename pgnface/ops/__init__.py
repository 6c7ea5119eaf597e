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
    release_cpu_cache: frees the CPU memory cached for the ops' large outputs.
    use_cpu_thread_pool: the CPU ops' parallel loops on pgnface's thread pool or torch's threads.
"""

from pgnface.ops import reference
from pgnface.ops._native import cuda_built, release_cpu_cache, use_cpu_thread_pool
from pgnface.ops.interpolate import interpolate
from pgnface.ops.pose import (
    Pose,
    apply_similarity,
    landmarks_to_pose,
    rotation_from_angles,
    rotation_to_angles,
)
from pgnface.ops.rasterize import Fragments, clip_from_pixels, rasterize
from pgnface.ops.similarity_align import similarity_align
from pgnface.ops.svd3x3 import svd3x3
from pgnface.ops.synthesize import synthesize

__all__ = [
    "Fragments",
    "Pose",
    "apply_similarity",
    "clip_from_pixels",
    "cuda_built",
    "interpolate",
    "landmarks_to_pose",
    "rasterize",
    "reference",
    "release_cpu_cache",
    "rotation_from_angles",
    "rotation_to_angles",
    "similarity_align",
    "svd3x3",
    "synthesize",
    "use_cpu_thread_pool",
]
