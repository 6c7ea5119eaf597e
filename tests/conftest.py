import sys
from pathlib import Path

# Lets tests import the shared helpers (op_harness) wherever pytest is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import functools  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

# PGNFACE_SYNC_DEBUG=error (scripts/gpu_check.sh sets it) runs every call of a pgnface op, its
# Python-side checks and its backward under torch.cuda.set_sync_debug_mode("error"): an op that makes
# the host wait for the GPU raises. "warn" warns instead. Test code between the calls may synchronise.
SYNC_DEBUG = os.environ.get("PGNFACE_SYNC_DEBUG", "")


class under_sync_debug:  # noqa: N801  (a function wrapper, named like one)
    """fn (a function or an op packet) that runs under torch.cuda.set_sync_debug_mode(mode).

    Other attributes (an op's `.default` overload) are fn's. Under torch.compile the mode is left
    alone (the check is an eager one, and setting it would break the graph).
    """

    def __init__(self, fn, mode):
        self.fn, self.mode = fn, mode
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        if torch.compiler.is_compiling():
            return self.fn(*args, **kwargs)
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(self.mode)
        try:
            return self.fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    def __getattr__(self, name):
        return getattr(self.__dict__["fn"], name)


def install_sync_debug(mode, set_attr=setattr):
    """Wraps the public ops of pgnface.ops and every torch.ops.pgnface op (backward ops included).

    Runs before the test modules import pgnface's other modules, so their `from pgnface.ops import
    ...` binds the wrapped ops too. The backward formulas call torch.ops.pgnface.<op>_backward by
    attribute, so backward passes run wrapped as well.

    Args:
        mode: "warn" or "error".
        set_attr: how to replace an attribute (a test passes monkeypatch.setattr).
    """
    import pgnface.ops as ops

    skip = {"Fragments", "Pose", "reference", "cuda_built"}
    for name in ops.__all__:
        if name not in skip:
            set_attr(ops, name, under_sync_debug(getattr(ops, name), mode))
    for name in torch._C._dispatch_get_all_op_names():
        if name.startswith("pgnface::"):
            op = name.split("::", 1)[1]
            set_attr(torch.ops.pgnface, op, under_sync_debug(getattr(torch.ops.pgnface, op), mode))


if SYNC_DEBUG:
    if SYNC_DEBUG not in ("warn", "error"):
        raise ValueError(f"PGNFACE_SYNC_DEBUG must be warn or error, got {SYNC_DEBUG!r}")
    if torch.cuda.is_available():
        install_sync_debug(SYNC_DEBUG)
