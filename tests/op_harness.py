"""Shared helpers for op tests: devices, tolerances, and kernel-vs-reference checks.

Every op test holds the compiled kernel (CPU, and CUDA when a GPU exists)
against its pure-PyTorch reference in pgnface.ops.reference, for values and
for gradients under the same random upstream gradient.
"""

import contextlib
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

import pytest
import torch

import pgnface.ops

HAS_CUDA = torch.cuda.is_available() and pgnface.ops.cuda_built()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and a CUDA build of pgnface")

# Parametrize a test over these to run it on CPU and, where possible, CUDA.
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=requires_cuda)]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]

# (rtol, atol) for comparing a kernel with its reference. float32 kernels sum
# in a different order than the reference, so they get a few ulps of slack
# per accumulated term; float64 is held far tighter.
# Every compute op of the library, forward and backward (the build-metadata ops aside).
OP_NAMES = (
    "synthesize",
    "synthesize_backward",
    "rasterize",
    "rasterize_backward",
    "interpolate",
    "interpolate_backward",
    "svd3x3",
    "svd3x3_backward",
    "similarity_align",
    "similarity_align_backward",
)
TOLERANCES = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 1e-10)}


@contextlib.contextmanager
def cpu_simd(enabled: bool):
    """Runs the block with the CPU twins' SIMD-across-the-batch paths on or off (scalar code when off)."""
    previous = torch.ops.pgnface.set_cpu_simd(enabled)
    try:
        yield
    finally:
        torch.ops.pgnface.set_cpu_simd(previous)


@contextlib.contextmanager
def cpu_simd_width(bits: int):
    """Runs the block with the CPU twins' vectors limited to ``bits`` (256 or 512) bits.

    Kernels with a 512-bit path take it only where the CPU supports AVX-512 (see
    ``torch.ops.pgnface.max_cpu_simd_width``); at 256 they run their AVX2 path.
    """
    previous = torch.ops.pgnface.set_cpu_simd_width(bits)
    try:
        yield
    finally:
        torch.ops.pgnface.set_cpu_simd_width(previous)


def tolerances(dtype: torch.dtype, scale: float = 1.0):
    rtol, atol = TOLERANCES[dtype]
    return rtol * scale, atol * scale


def leaf_copies(args: Dict[str, Optional[torch.Tensor]], grad_names: Iterable[str]):
    """Detached copies of args; those named in grad_names require grad."""
    grad_names = set(grad_names)
    out = {}
    for name, value in args.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().clone().requires_grad_(name in grad_names)
        out[name] = value
    return out


def assert_matches_reference(
    op: Callable, reference: Callable, args: Dict, grad_names: Iterable[str], *, rtol: float, atol: float, seed: int = 0
) -> torch.Tensor:
    """Asserts op(**args) == reference(**args) in value and in the gradients of grad_names.

    Returns:
        The op's output, for further checks.
    """
    grad_names = list(grad_names)
    ours_args = leaf_copies(args, grad_names)
    ref_args = leaf_copies(args, grad_names)
    ours = op(**ours_args)
    ref = reference(**ref_args)
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol, msg=lambda m: f"forward: {m}")
    if grad_names:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        upstream = torch.randn(ref.shape, generator=gen, dtype=ref.dtype).to(ref.device)
        ours.backward(upstream)
        ref.backward(upstream)
        for name in grad_names:
            torch.testing.assert_close(
                ours_args[name].grad,
                ref_args[name].grad,
                rtol=rtol,
                atol=atol,
                msg=lambda m, n=name: f"grad of {n}: {m}",
            )
    return ours


def shared_data_dir() -> Path:
    """The real face data folder: $PGNFACE_SHARED_DATA, else shared/data beside the checkout's folder."""
    env = os.environ.get("PGNFACE_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_file(name: str) -> Path:
    """Path of a shared data file; skips the calling test when it is absent (fresh clones)."""
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"real face data {name} not found under {shared_data_dir()}")
    return path
