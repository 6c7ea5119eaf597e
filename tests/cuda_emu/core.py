"""The torch-free core library: the emulator plus the kernels of tests/cuda_emu/kernels, via ctypes."""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from .build import build_core
from .schedules import configure, declare_control

# Mutations of kernels/mutants.cu (0 = the correct kernel).
(
    CORRECT,
    REMOVE_BARRIER,
    EARLY_RETURN,
    DIVERGENT_SHUFFLE,
    TAIL_OFF_BY_ONE,
    RACY_UPDATE,
    SHARED_OVERRUN,
    SPLIT_BARRIER,
) = range(8)

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I = ctypes.c_int
_SIGNATURES = {
    "emu_transpose": [_P, _P, _I64, _I],
    "emu_scale_by_block_sum": [_P, _P, _I64, _I],
    "emu_row_sum": [_P, _P, _I64, _I64, _I],
    "emu_scatter_add": [_P, _P, _P, _I64, _I64, _I],
    "emu_collectives": [_P, _P, _P, _I, _I],
    "emu_dynamic_shared": [_P, _P, _I, _I],
    "emu_bad_launch": [_P, _I],
}


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """Builds (once, cached on disk) and loads the core library."""
    lib = declare_control(ctypes.CDLL(str(build_core())))
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_char_p
    return lib


def run(entry: str, schedule: str, *args) -> str | None:
    """Runs an entry point of kernels/mutants.cu under a schedule; returns None or the emulator's error.

    numpy arrays are passed by pointer (the entry point tracks them as global allocations).
    """
    lib = library()
    configure(lib, schedule)
    converted = [a.ctypes.data_as(_P) if isinstance(a, np.ndarray) else a for a in args]
    error = getattr(lib, entry)(*converted)
    return None if error is None else error.decode()
