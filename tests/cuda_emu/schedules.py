"""The schedules every emulated kernel runs in, and the ctypes control surface shared by both libraries."""

from __future__ import annotations

import ctypes

# (name, schedule code, seed): threads and blocks forward, reversed, and in two seeded random orders.
SCHEDULES = [("forward", 0, 0), ("reversed", 1, 0), ("random1", 2, 1), ("random2", 2, 2)]
SCHEDULE_IDS = [name for name, _, _ in SCHEDULES]


def declare_control(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declares the emulator's control functions (src/c_api.cpp) on a loaded library."""
    lib.cuda_emu_configure.argtypes = [ctypes.c_int, ctypes.c_ulonglong, ctypes.c_int]
    lib.cuda_emu_configure.restype = None
    lib.cuda_emu_end_op.restype = ctypes.c_char_p
    lib.cuda_emu_reset_op.restype = None
    lib.cuda_emu_counters_json.restype = ctypes.c_char_p
    lib.cuda_emu_counters_clear.restype = None
    lib.cuda_emu_launches.restype = ctypes.c_ulonglong
    lib.cuda_emu_thread_work_json.restype = ctypes.c_char_p
    lib.cuda_emu_thread_work_clear.restype = None
    lib.cuda_emu_track.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong]
    lib.cuda_emu_untrack.argtypes = [ctypes.c_void_p]
    lib.cuda_emu_set_multiprocessors.argtypes = [ctypes.c_int]
    lib.cuda_emu_set_multiprocessors.restype = None
    return lib


def configure(lib: ctypes.CDLL, schedule: str, counters: bool = False) -> None:
    """Selects one of SCHEDULES by name for the following launches."""
    code, seed = next((c, s) for name, c, s in SCHEDULES if name == schedule)
    lib.cuda_emu_configure(code, seed, int(counters))
