"""The cache of the CPU memory behind the ops' large outputs (csrc/common/output_pool.h)."""

import os
import subprocess
import sys

import torch

import pgnface.ops as ops


def large_svd_input(seed: int) -> torch.Tensor:
    # 100,000 matrices: U and V are 3.6 MB each, above the 2 MiB threshold of the cache.
    return torch.randn(100_000, 3, 3, generator=torch.Generator().manual_seed(seed))


def test_freed_output_memory_is_reused_and_values_are_fresh():
    ops.release_cpu_cache()
    U, _, _ = ops.svd3x3(large_svd_input(0))
    address = U.data_ptr()
    del U
    M = large_svd_input(1)
    U, S, V = ops.svd3x3(M)
    assert U.data_ptr() == address
    # The reused block holds the new call's values, not the old ones.
    torch.testing.assert_close(U @ torch.diag_embed(S) @ V.mT, M, atol=1e-5, rtol=0)


def test_release_returns_the_cached_bytes_and_empties_the_cache():
    ops.release_cpu_cache()
    out = ops.svd3x3(large_svd_input(2))
    blocks = [t.untyped_storage().nbytes() for t in (out[0], out[2])]
    assert min(blocks) >= 2 << 20
    del out
    freed = ops.release_cpu_cache()
    assert freed >= 2 * (2 << 20)
    assert freed % (2 << 20) == 0  # whole 2 MiB blocks
    assert ops.release_cpu_cache() == 0


def test_outputs_from_the_cache_are_ordinary_resizable_tensors():
    out = ops.svd3x3(large_svd_input(3))[0]
    grown = out.clone()
    out.resize_(200_000, 3, 3)  # reallocates through the cache's allocator and keeps the values
    torch.testing.assert_close(out[:100_000], grown)
    out.view(-1)[:10].fill_(1.0)
    assert torch.equal(out.view(-1)[:10], torch.ones(10))


def test_cache_off_and_bad_setting_are_handled():
    code = (
        "import torch, pgnface.ops as ops\n"
        "out = ops.svd3x3(torch.randn(100000, 3, 3)); del out\n"
        "print(ops.release_cpu_cache())\n"
    )
    env = dict(os.environ)
    env["PGN_CPU_CACHE_MB"] = "0"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "0"  # nothing kept
    env["PGN_CPU_CACHE_MB"] = "lots"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "PGN_CPU_CACHE_MB must be a whole number of MiB" in bad.stderr
    assert int(bad.stdout.strip()) > 0  # the default cap applies
