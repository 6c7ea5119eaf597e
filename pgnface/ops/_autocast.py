"""Autocast for the native ops: float16 / bfloat16 inputs run in float32 under ``torch.autocast``.

The kernels exist for float32 and float64 only, and their numerics (fixed-point
coverage, 3x3 SVDs, long sums over vertices) need float32 at least, so the ops
follow autocast's float32 policy: inside a ``torch.autocast`` region of the
input's device, half-precision inputs are cast to float32 (a differentiable
cast: their gradients come back in their own dtype) and the op returns float32.
Outside autocast, half-precision inputs are refused as before.
"""

from typing import Tuple

import torch

_HALF = (torch.float16, torch.bfloat16)
_AUTOCAST_DEVICES = ("cpu", "cuda")


def float32_under_autocast(*values) -> Tuple:
    """Casts the half-precision tensors among values to float32 where autocast is on for their device.

    Args:
        values: tensors or other values (None, numbers), passed through unless a
            float16 / bfloat16 tensor on a device with autocast enabled.

    Returns:
        The values, in order, with those tensors cast to float32.
    """
    return tuple(_cast(v) for v in values)


def _cast(value):
    if (
        isinstance(value, torch.Tensor)
        and value.dtype in _HALF
        and value.device.type in _AUTOCAST_DEVICES
        and torch.is_autocast_enabled(value.device.type)
    ):
        return value.float()
    return value
