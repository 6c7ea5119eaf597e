"""Performance counters from emulation: every kernel is counted, and known-good access patterns stay good."""

import re
import sys
from pathlib import Path

import pytest
import torch
from cuda_emu import extension as emu
from test_cuda_emu_ops import synthesize_args

pytestmark = pytest.mark.cuda_emu

ROOT = Path(__file__).resolve().parents[1]


def counted(runs):
    emu.clear_counters()
    for op, args in runs:
        emu.call(op, *args, counters=True)
    return emu.counters()


def kernel_entry(counters, name, dtype):
    label = "float" if dtype == torch.float32 else "double"
    matches = [v for k, v in counters.items() if k.startswith(name + "<") and k.endswith(f"[{label}]")]
    assert len(matches) == 1, sorted(counters)
    return matches[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [3, 8, 40])  # batch tiles of 4, 16 and 32
def test_synthesize_shared_memory_has_no_bank_conflicts(B, dtype):
    args = synthesize_args(B, 70, 45, dtype)
    grad = torch.randn(B, 70, 3, dtype=dtype)
    out = torch.ops.pgnface.synthesize(*args)[0]
    # Scale 0 sends the first item to the recompute path, whose tile contracts the basis twice.
    recompute = [*args[:4], torch.cat([args[4][:1] * 0, args[4][1:]]), args[5]]
    counters = counted(
        [
            ("synthesize", args),
            ("synthesize_backward", [grad, out, *args, False]),
            ("synthesize_backward", [grad, torch.ops.pgnface.synthesize(*recompute)[0], *recompute, False]),
        ]
    )
    for kernel in ("synthesize_forward_kernel", "synthesize_backward_kernel"):
        c = kernel_entry(counters, kernel, dtype)
        assert c["shared_requests"] > 0
        assert c["shared_wavefronts"] == c["shared_ideal_wavefronts"], (kernel, c)


def test_svd3x3_staging_is_coalesced():
    M = torch.randn(256, 3, 3)
    c = kernel_entry(counted([("svd3x3", [M])]), "svd3x3_kernel", torch.float32)
    assert c["global_sectors"] == c["global_ideal_sectors"], c
    assert c["shared_wavefronts"] == c["shared_ideal_wavefronts"], c


def load_efficiency(c):
    """Bytes a kernel's global loads use over the 32-byte sectors they fetch (1.0: perfectly coalesced)."""
    return c["global_load_ideal_sectors"] / c["global_load_sectors"]


# Kernels whose global loads are meant to be coalesced: contiguous per warp, or staged through shared
# memory where a thread needs a row of several values. The rasterizer's kernels are not among them:
# their loads are mostly gathers of triangles and vertices by index (see docs/cuda_emulation.md).
COALESCED = [
    "svd3x3_kernel",
    "svd3x3_backward_kernel",
    "similarity_align_kernel",
    "similarity_align_backward_kernel",
    "synthesize_forward_kernel",
    "synthesize_backward_kernel",
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coalesced_kernels_use_most_of_the_sectors_they_load(dtype):
    g = torch.Generator().manual_seed(4)
    M = torch.randn(200, 3, 3, generator=g, dtype=dtype)  # a partial last block
    U, S, V, _ = torch.ops.pgnface.svd3x3(M)
    grads = [torch.randn(x.shape, generator=g, dtype=dtype) for x in (U, S, V)]
    src = torch.randn(9, 68, 3, generator=g, dtype=dtype)  # 68 points: two full chunks and a partial one
    dst = 1.2 * src + 0.01 * torch.randn(src.shape, generator=g, dtype=dtype)
    w = torch.rand(9, 68, generator=g, dtype=dtype)
    align_grads = [torch.randn(s, generator=g, dtype=dtype) for s in [(9,), (9, 3, 3), (9, 3)]]
    align_sums = torch.ops.pgnface.similarity_align(src, dst, w, True)[3]
    args = synthesize_args(40, 70, 45, dtype)  # a partial last vertex tile
    grad = torch.randn(40, 70, 3, generator=g, dtype=dtype)
    counters = counted(
        [
            ("synthesize", args),
            ("synthesize_backward", [grad, torch.ops.pgnface.synthesize(*args)[0], *args, False]),
            ("svd3x3", [M]),
            ("svd3x3_backward", [*grads, U, S, V]),
            ("similarity_align", [src, dst, w, True]),
            ("similarity_align_backward", [*align_grads, src, dst, w, align_sums, True]),
        ]
    )
    for kernel in COALESCED:
        c = kernel_entry(counters, kernel, dtype)
        assert load_efficiency(c) >= 0.8, (kernel, c)


def test_the_bench_counts_every_kernel():
    sys.path.insert(0, str(ROOT))  # bench/ lives next to tests/
    from bench.emu_counters import call_workload, rows_from, workloads

    kernels = set()
    for path in [*(ROOT / "csrc").rglob("*.cu"), *(ROOT / "csrc").rglob("*.h")]:  # shared kernels: common/*.h
        kernels |= set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)", path.read_text()))
    emu.clear_counters()
    for name, op, args in workloads(torch.float32, small=True):
        call_workload(emu, name, op, args, counters=True)
    counters = emu.counters()
    rows = rows_from(counters)
    assert {row["kernel"].split("<")[0] for row in rows} == kernels
    assert all(row["global_req"] > 0 for row in rows)
