"""Argument validation shared by the op wrappers.

Every wrapper checks types, shapes and devices here before any kernel sees
them, and raises TypeError (wrong type / dtype) or ValueError (wrong shape,
device) naming the argument and what was expected.

Value checks (``check_values``: NaN / Inf, index ranges, signs) are not done
here: the kernels do them as they first read the data and report through a
status word that each op returns (csrc/common/status.h). On CPU the op then
raises ValueError naming the argument; on CUDA it enqueues an asynchronous
device-side assertion, so there is no host synchronisation, and the checks
stay on under torch.compile and CUDA graph capture. :func:`check_mode` turns
``check_values`` into the ops' ``check`` argument.
"""

from typing import Dict, Sequence, Union

import torch

from pgnface.ops._native import check_device_supported

FLOAT_DTYPES = (torch.float32, torch.float64)

# The ``check`` argument of the forward ops (csrc/common/status.h).
CHECK_OFF, CHECK_RECORD, CHECK_RAISE = 0, 1, 2


def check_mode(check_values: bool) -> int:
    """The ops' ``check`` argument for a wrapper's ``check_values``.

    Args:
        check_values: the wrapper's flag.

    Returns:
        CHECK_RAISE (the kernels check; CPU raises, CUDA asserts asynchronously) or CHECK_OFF.
    """
    return CHECK_RAISE if check_values else CHECK_OFF


def require_tensor(x, name: str) -> torch.Tensor:
    """Requires a tensor.

    Args:
        x: the argument.
        name: its name, for the error.

    Returns:
        x.

    Raises:
        TypeError: x is not a torch.Tensor.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def require_shape(x: torch.Tensor, name: str, spec: Sequence[Union[int, str]], sizes: Dict[str, int]) -> None:
    """Checks x.shape against spec, binding named sizes (e.g. "N") on first sight.

    Args:
        x: tensor to check.
        name: argument name used in the error message.
        spec: expected shape; ints are fixed sizes, strings are symbols shared
            across arguments through `sizes`.
        sizes: symbol -> size bindings, updated in place.

    Raises:
        ValueError: wrong number of dimensions or a size that differs from the spec or an earlier binding.
    """
    if x.dim() != len(spec):
        raise ValueError(f"{name} must have shape {_spec_text(spec)}, got {list(x.shape)}")
    for axis, (want, got) in enumerate(zip(spec, x.shape)):
        if isinstance(want, str):
            if want not in sizes:
                sizes[want] = int(got)
                continue
            want_size = sizes[want]
        else:
            want_size = want
        if int(got) != want_size:
            bound = "[" + ", ".join(str(sizes.get(s, s)) if isinstance(s, str) else str(s) for s in spec) + "]"
            raise ValueError(
                f"{name} must have shape {_spec_text(spec)} = {bound}, got {list(x.shape)} "
                f"(axis {axis} is {int(got)}, expected {want_size})"
            )


def _spec_text(spec: Sequence[Union[int, str]]) -> str:
    """A shape spec as the errors write it, e.g. "[B, N, 4]" (built only when one is raised)."""
    return "[" + ", ".join(str(s) for s in spec) + "]"


def require_float(x: torch.Tensor, name: str) -> None:
    """Requires float32 or float64.

    Args:
        x: the tensor.
        name: its name, for the error.

    Raises:
        TypeError: another dtype.
    """
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


def require_like(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """Requires x to have ref's dtype and device (no silent casts or copies).

    Args:
        x: the tensor.
        name: its name, for the error.
        ref: the tensor it must match.
        ref_name: ref's name, for the error.

    Raises:
        TypeError: another dtype.
        ValueError: another device.
    """
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} must have dtype {ref.dtype} like {ref_name}, got {x.dtype}")
    if x.device != ref.device:
        raise ValueError(f"{name} must be on {ref.device} like {ref_name}, got {x.device}")


def require_supported_device(x: torch.Tensor, name: str) -> None:
    """Requires a device this build has kernels for (the ``require_*`` name of check_device_supported).

    Args:
        x: the tensor.
        name: its name, for the error.

    Raises:
        RuntimeError: a CUDA tensor with a CPU-only build.
    """
    check_device_supported(x, name)


def values_checkable() -> bool:
    """Whether data-dependent Python checks may run: not while tracing or capturing a CUDA graph.

    Returns:
        False under torch.compile and during CUDA graph capture.
    """
    if torch.compiler.is_compiling():
        return False
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return False
    return True


def host_values_readable(x: torch.Tensor) -> bool:
    """Whether x's values can be read in Python at no synchronisation cost.

    Args:
        x: the tensor.

    Returns:
        True for a CPU tensor outside torch.compile tracing.
    """
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def index_range_message(name: str, size: int, lo: int, hi: int, of: str = "") -> str:
    """The error for indices outside [0, size - 1] (the same words the kernels' status check uses).

    Args:
        name: the argument.
        size: length of the indexed axis.
        lo: smallest index found.
        hi: largest index found.
        of: what the axis holds ("vertices"), or "" for plain values.

    Returns:
        The one-line message.
    """
    must, got = (f"index {of} in", "indices") if of else ("lie in", "values")
    return f"{name} must {must} [0, {size - 1}], got {got} in [{lo}, {hi}]"


def assert_index_async(index: torch.Tensor, name: str, size: int) -> None:
    """Asserts 0 <= index < size without reading the values on the host (no sync, traceable).

    Args:
        index: the integer tensor.
        name: its name, for the message.
        size: length of the indexed axis.
    """
    if index.numel():
        inside = ((index >= 0) & (index < size)).all()
        torch._assert_async(inside, f"{name} must lie in [0, {size - 1}]")


def require_index(
    index,
    name: str,
    size: int,
    device: torch.device,
    check_values: bool,
    shape: Sequence[Union[int, str]] = ("L",),
    of: str = "",
) -> torch.Tensor:
    """Validates an integer tensor of indices into an axis of length `size`.

    Args:
        index: the tensor to check, int32 or int64.
        name: argument name used in the error messages.
        size: length of the indexed axis; values must lie in [0, size - 1].
        device: the device `index` must be on (that of the tensor it indexes).
        check_values: check the range (one device sync on CUDA; skipped under
            torch.compile and CUDA graph capture).
        shape: expected shape, as for :func:`require_shape`.
        of: what the axis holds, for the range error ("vertices": "tris must
            index vertices in [0, N - 1], got indices in [lo, hi]").

    Returns:
        `index` itself.

    Raises:
        TypeError: not a tensor, or not int32 / int64.
        ValueError: wrong shape or device, or (with check_values) a value out of range.
    """
    require_tensor(index, name)
    if index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be an int32 or int64 tensor, got {index.dtype}")
    require_shape(index, name, shape, {})
    if index.device != device:
        raise ValueError(f"{name} must be on {device}, got {index.device}")
    if check_values and index.numel() and values_checkable():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= size:
            raise ValueError(index_range_message(name, size, lo, hi, of))
    return index
