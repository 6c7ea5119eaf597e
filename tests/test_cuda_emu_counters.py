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
    counters = counted([("synthesize", args), ("synthesize_backward", [grad, *args, False])])
    for kernel in ("synthesize_forward_kernel", "synthesize_backward_kernel"):
        c = kernel_entry(counters, kernel, dtype)
        assert c["shared_requests"] > 0
        assert c["shared_wavefronts"] == c["shared_ideal_wavefronts"], (kernel, c)


def test_svd3x3_staging_is_coalesced():
    M = torch.randn(256, 3, 3)
    c = kernel_entry(counted([("svd3x3", [M])]), "svd3x3_kernel", torch.float32)
    assert c["global_sectors"] == c["global_ideal_sectors"], c
    assert c["shared_wavefronts"] == c["shared_ideal_wavefronts"], c


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
