"""pgnface: CUDA/C++ kernels for 3D face reconstruction and a Pose Guidance Network.

`import pgnface.ops` gives the differentiable ops (see pgnface/ops/__init__.py).
"""

__version__ = "0.1.0"

from pgnface import ops  # noqa: E402,F401  (loads the compiled kernels and registers the ops)
