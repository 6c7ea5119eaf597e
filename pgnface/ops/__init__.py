"""Differentiable face-reconstruction ops with CUDA kernels and C++ CPU twins.

Each op is a torch custom op (torch.ops.pgnface.<name>) with a fake kernel and an
autograd formula, so it works under torch.compile(fullgraph=True), torch.export
and CUDA graphs. `pgnface.ops.reference` holds the pure-PyTorch versions the
tests hold the kernels against.

Ops:
    synthesize: fused 3DMM vertex synthesis s * R (mean + basis @ c) + t.
"""

from .._ext import cuda_built
from . import reference
from .synthesize import synthesize

__all__ = ["cuda_built", "reference", "synthesize"]
