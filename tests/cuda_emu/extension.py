"""The emulated pgnface extension: the exact .cu sources run on the CPU as ops of `torch.ops.pgnface_emu`.

Each pgnface op has a twin `pgnface_emu::<op>` with the same schema, whose
implementation is the op's CUDA entry point (device guard, stream, launches)
with the kernels run by the emulator on CPU tensors.
"""

from __future__ import annotations

import ctypes
import functools
import json

import torch

from .build import build_extension
from .schedules import configure, declare_control

_schema_library = None


def _define_schemas() -> list[str]:
    """Defines pgnface_emu::<op> for every pgnface op, with the same schema; returns the op names."""
    global _schema_library
    import pgnface.ops  # noqa: F401  (loads pgnface._C, whose schemas are copied)

    names = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("pgnface::"))
    if _schema_library is None:
        _schema_library = torch.library.Library("pgnface_emu", "DEF")
        for name in names:
            schema = str(getattr(torch.ops.pgnface, name).default._schema)
            _schema_library.define(schema.split("::", 1)[1])
    return names


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """Builds (once, cached on disk) and loads the emulated extension; returns its control surface."""
    _define_schemas()
    path = build_extension()
    torch.ops.load_library(str(path))
    return declare_control(ctypes.CDLL(str(path)))


def ops() -> list[str]:
    """The names of the emulated ops: those the .cu sources implement."""
    library()
    return [
        name
        for name in _define_schemas()
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"pgnface_emu::{name}", "CPU")
    ]


def _tracked(value):
    # A fresh allocation made after the extension loaded is tracked by the emulator's allocator
    # (tensors from numpy or from before would read as untracked memory); strides are kept.
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.size(), value.stride(), dtype=value.dtype).copy_(value)
    return value


def call(name: str, *args, schedule: str = "forward", counters: bool = False):
    """Runs pgnface_emu::<name>(*args) under a schedule; raises RuntimeError with the emulator's report."""
    lib = library()
    configure(lib, schedule, counters)
    try:
        out = getattr(torch.ops.pgnface_emu, name)(*[_tracked(a) for a in args])
    except Exception:
        lib.cuda_emu_reset_op()
        raise
    error = lib.cuda_emu_end_op()
    if error is not None:
        raise RuntimeError(error.decode())
    return out


def counters() -> dict:
    """The counters collected so far (launches run with counters=True), per kernel."""
    return json.loads(library().cuda_emu_counters_json().decode())


def clear_counters() -> None:
    library().cuda_emu_counters_clear()


def set_multiprocessors(count: int) -> None:
    """Sets the SM count the emulated device reports (getCurrentDeviceProperties()->multiProcessorCount)."""
    library().cuda_emu_set_multiprocessors(count)


def thread_work(clear: bool = True) -> dict[str, int]:
    """Per kernel, the most global and shared accesses one thread made since the last clear.

    Always recorded (unlike `counters`): an atomic or a load is one access, so a
    thread that depth-tests n pixels makes at least n accesses.

    Args:
        clear: forget the record afterwards.
    Returns:
        {"kernel [dtype]": accesses}.
    """
    lib = library()
    work = json.loads(lib.cuda_emu_thread_work_json().decode())
    if clear:
        lib.cuda_emu_thread_work_clear()
    return work
