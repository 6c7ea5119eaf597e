"""Performance counters of every CUDA kernel, measured in the CPU emulator of the CUDA execution model.

    python -m bench.emu_counters [--dtype float32|float64] [--json FILE]

No profiler can run without a GPU; these ncu-like counters come from the
emulator (tests/cuda_emu), which sees every memory access of every thread:

- sectors/req: 32-byte global-memory sectors per warp request (coalescing;
  ideal/req is what the request's bytes would need if packed; sector_eff is
  their ratio, ideal over actual sectors, 1.0 for perfectly coalesced access;
  load_eff the same ratio over the global loads only);
- bank x/req: shared-memory wavefronts per request, over the ideal (1 for
  4-byte, 2 for 8-byte accesses): the excess is the bank conflict;
- active lanes: the fraction of a warp's 32 lanes a request uses (divergence,
  partial warps);
- atomics/addr: atomic operations per distinct target address (contention).

Workloads are small and real: the Surrey model (3448 vertices, 63 components),
its mesh rasterized at 64 x 64, 256 matrices, 64 alignments of 68 landmarks.
See docs/cuda_emulation.md for what these numbers mean and what they cannot.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from bench.common import environment, format_table, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

COLUMNS = [
    "kernel",
    "launches",
    "global_req",
    "sectors/req",
    "ideal/req",
    "sector_eff",
    "load_eff",
    "shared_req",
    "wavefronts/req",
    "ideal_wf/req",
    "active_lanes",
    "atomics",
    "atomics/addr",
]


# Workloads whose name ends so run under torch.use_deterministic_algorithms(True), which switches
# the rasterizer's backward passes from atomics to their sorted gather.
DETERMINISTIC = " (deterministic)"


def call_workload(emu, name, op, args, **kwargs):
    """Runs one workload through the emulator (emu.call), in deterministic mode where its name asks for it."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(name.endswith(DETERMINISTIC) or before)
    try:
        return emu.call(op, *args, **kwargs)
    finally:
        torch.use_deterministic_algorithms(before)


def surrey_model(dtype):
    """The Surrey model's mean, basis and triangles from the shared data, else a random stand-in of its size."""
    from op_harness import shared_data_dir

    path = shared_data_dir() / "sfm3448.npz"
    if path.exists():
        data = np.load(path)
        return (
            torch.from_numpy(data["mean"]).to(dtype),
            torch.from_numpy(data["basis"] * data["std"]).to(dtype),
            torch.from_numpy(data["triangles"]).int(),
            "sfm3448",
        )
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(3448, 3, generator=g, dtype=dtype),
        torch.randn(3448, 3, 63, generator=g, dtype=dtype),
        None,
        "random",
    )


def workloads(dtype, small=False):
    """(name, op, args) of the runs that launch every kernel once or more (small: tiny sizes, for tests)."""
    import pgnface.ops as ops

    g = torch.Generator().manual_seed(0)
    mean, basis, tris, source = surrey_model(dtype)
    if small and tris is not None:
        # The vertices of the first 150 triangles, re-indexed.
        used, tris = torch.unique(tris[:150].long(), return_inverse=True)
        mean, basis, tris, source = mean[used], basis[used, :, :40], tris.int(), "cut"
    B, K = 8, basis.shape[2]
    pose = [torch.eye(3, dtype=dtype).repeat(B, 1, 1), torch.ones(B, dtype=dtype), torch.zeros(B, 3, dtype=dtype)]
    coeffs = torch.randn(B, K, generator=g, dtype=dtype)
    synth = [mean, basis, coeffs, *pose]
    grad = torch.randn(B, mean.shape[0], 3, generator=g, dtype=dtype)
    runs = [
        (f"synthesize {source} B={B}", "synthesize", synth),
        (
            f"synthesize_backward {source} B={B}",
            "synthesize_backward",
            [grad, ops.synthesize(*synth), *synth, True],
        ),
    ]
    if tris is None:
        if small:
            mean, basis = mean[:200], basis[:200, :, :40]
        tris = torch.randint(0, mean.shape[0], (mean.shape[0] * 2, 3), generator=g).int()
    H = W = 24 if small else 64
    centred = mean - (mean.max(0).values + mean.min(0).values) / 2
    pixels = torch.stack(
        [
            centred[:, 0] * 0.35 * H / centred.abs().max() + W / 2,
            H / 2 - centred[:, 1] * 0.35 * H / centred.abs().max(),
            centred[:, 2],
        ],
        -1,
    )
    pos = ops.clip_from_pixels(pixels.double(), (H, W), depth_scale=-1e-3)[None].to(dtype).repeat(2, 1, 1)
    bary, depth, tri_id, _ = torch.ops.pgnface.rasterize(pos, tris, H, W, 0)
    colours = torch.rand(1, mean.shape[0], 3, generator=g, dtype=dtype)
    runs += [
        ("rasterize 2x64x64", "rasterize", [pos, tris, H, W, 0]),
        (
            "rasterize_backward",
            "rasterize_backward",
            [
                torch.randn(bary.shape, generator=g, dtype=dtype),
                torch.randn(depth.shape, generator=g, dtype=dtype),
                pos,
                tris,
                tri_id,
            ],
        ),
        ("interpolate C=3", "interpolate", [colours, tri_id, bary, tris]),
        (
            "interpolate_backward C=3",
            "interpolate_backward",
            [torch.randn(2, H, W, 3, generator=g, dtype=dtype), colours, tri_id, bary, tris],
        ),
    ]
    runs += [(name + DETERMINISTIC, op, args) for name, op, args in runs[-3:] if op.endswith("_backward")]
    M = torch.randn(40 if small else 256, 3, 3, generator=g, dtype=dtype)
    U, S, V, _ = torch.ops.pgnface.svd3x3(M)
    runs += [
        ("svd3x3 B=256", "svd3x3", [M]),
        (
            "svd3x3_backward B=256",
            "svd3x3_backward",
            [torch.randn_like(U), torch.randn_like(S), torch.randn_like(V), U, S, V],
        ),
    ]
    src = torch.randn(64, 68, 3, generator=g, dtype=dtype)
    dst = 1.2 * src + 0.01 * torch.randn(64, 68, 3, generator=g, dtype=dtype)
    w = torch.rand(64, 68, generator=g, dtype=dtype)
    runs += [
        ("similarity_align B=64 P=68", "similarity_align", [src, dst, w, True]),
        (
            "similarity_align_backward",
            "similarity_align_backward",
            [
                torch.randn(64, dtype=dtype),
                torch.randn(64, 3, 3, dtype=dtype),
                torch.randn(64, 3, dtype=dtype),
                src,
                dst,
                w,
                torch.ops.pgnface.similarity_align(src, dst, w, True)[3],
                True,
            ],
        ),
    ]
    return runs


def rows_from(counters):
    rows = []
    for kernel, c in sorted(counters.items()):
        gr, sr = c["global_requests"], c["shared_requests"]
        rows.append(
            {
                "kernel": kernel,
                "launches": c["launches"],
                "global_req": gr,
                "sectors/req": c["global_sectors"] / gr if gr else 0.0,
                "ideal/req": c["global_ideal_sectors"] / gr if gr else 0.0,
                "sector_eff": c["global_ideal_sectors"] / c["global_sectors"] if c["global_sectors"] else 0.0,
                "load_eff": c["global_load_ideal_sectors"] / c["global_load_sectors"]
                if c["global_load_sectors"]
                else 0.0,
                "shared_req": sr,
                "wavefronts/req": c["shared_wavefronts"] / sr if sr else 0.0,
                "ideal_wf/req": c["shared_ideal_wavefronts"] / sr if sr else 0.0,
                "active_lanes": c["lanes_active"] / c["lane_slots"] if c["lane_slots"] else 0.0,
                "atomics": c["atomics"],
                "atomics/addr": c["atomics"] / c["atomic_addresses"] if c["atomic_addresses"] else 0.0,
            }
        )
    return rows


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)

    from cuda_emu import extension as emu

    emu.clear_counters()
    runs = workloads(dtype)
    for name, op, op_args in runs:
        call_workload(emu, name, op, op_args, schedule="forward", counters=True)
    rows = rows_from(emu.counters())
    print(f"CUDA kernel counters from emulation, {args.dtype}; workloads: " + "; ".join(n for n, _, _ in runs))
    print(format_table(rows, COLUMNS))
    write_json(
        args.json,
        {"environment": environment(), "dtype": args.dtype, "workloads": [n for n, _, _ in runs], "kernels": rows},
    )


if __name__ == "__main__":
    main()
