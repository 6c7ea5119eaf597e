"""Benchmark of pgnface.ops.synthesize against plain PyTorch.

    python -m bench.synthesize [--device cpu|cuda] [--threads T] [--quick] [--rounds R] [--json FILE]

Two plain-torch formulations run on the same inputs in the same process: the
einsum reference (pgnface.ops.reference.synthesize) and the matmul chain (one
addmm over the flattened basis, one baddbmm for the pose, usually the faster);
the speed-up is against the faster of the two. pgnface runs with its default
arguments (value checks on). The three alternate call by call and each side's
minimum is reported, so that load from other processes inflates none more than
another. The table adds pgnface's achieved memory bandwidth (the bytes each pass
must move over its time) and its share of the peak: the GPU's nominal peak, or
on a CPU the read bandwidth a streaming reduction reaches at the current thread
count, measured at the start. Both formulations read the basis once forward and
once backward, so where pgnface is near that bandwidth no schedule can gain much.
"""

import argparse
import sys
import time

import torch

import pgnface.ops as ops
from bench.common import (
    device_description,
    environment,
    format_table,
    min_times_alternating,
    peak_bandwidth_gbps,
    write_json,
)

# (name, vertices N, components K): the Surrey model (63 identity + 6
# expression), 3DDFA's no-neck BFM (40 + 10) and the full BFM with expressions
# (199 + 29). Random values of these sizes.
MODELS = [("surrey", 3448, 69), ("bfm-3ddfa", 38365, 50), ("bfm-full", 53490, 228)]
BATCHES = [1, 8, 64, 256]
QUICK_BATCHES = [1, 64]


def make_inputs(N, K, B, device, dtype):
    g = torch.Generator().manual_seed(0)
    rot = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))[0]
    args = dict(
        mean=torch.randn(N, 3, generator=g),
        basis=torch.randn(N, 3, K, generator=g) * 0.1,
        coeffs=torch.randn(B, K, generator=g),
        rotation=rot,
        scale=torch.rand(B, generator=g) + 0.5,
        translation=torch.randn(B, 3, generator=g),
    )
    return {k: v.to(device=device, dtype=dtype) for k, v in args.items()}


def forward_backward(fn, args, grad_names=("coeffs", "rotation", "scale", "translation")):
    leaves = {k: (v.requires_grad_(True) if k in grad_names else v) for k, v in args.items()}

    def run():
        for k in grad_names:
            leaves[k].grad = None
        fn(**leaves).sum().backward()

    return run


def synthesize_matmul(mean, basis, coeffs, rotation, scale, translation):
    """Plain torch: s R (mean + basis c) + t as one addmm and one baddbmm."""
    N, _, K = basis.shape
    shape = torch.addmm(mean.reshape(1, -1), coeffs, basis.reshape(-1, K).T).view(-1, N, 3)
    return torch.baddbmm(translation[:, None, :], shape, rotation.mT * scale[:, None, None])


def cpu_read_bandwidth_gbps(mib=256, rounds=5):
    """GB/s a streaming reduction (torch.sum over mib MiB) reaches with the current thread count."""
    x = torch.ones(mib * 2**20 // 4)
    x.sum()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best / 1e9


def bench_case(name, N, K, B, device, dtype, rounds, peak=None):
    args = make_inputs(N, K, B, device, dtype)
    sides = (ops.synthesize, ops.reference.synthesize, synthesize_matmul)
    rows = []
    with torch.no_grad():
        ours, einsum, matmul = min_times_alternating([lambda f=f: f(**args) for f in sides], device, rounds)
    elem = torch.finfo(dtype).bits // 8
    moved = (N * 3 * K + N * 3 + B * K + B * N * 3) * elem  # bytes the forward must touch
    head = dict(morphable=name, N=N, K=K, B=B)
    row = dict(head, **{"pass": "forward"}, pgnface_ms=ours * 1e3, einsum_ms=einsum * 1e3, matmul_ms=matmul * 1e3)
    row["speedup"] = min(einsum, matmul) / ours
    if peak:
        row["GB/s"] = moved / ours / 1e9
        row["%peak"] = 100.0 * row["GB/s"] / peak
    rows.append(row)
    runs = [forward_backward(f, {k: v.detach().clone() for k, v in args.items()}) for f in sides]
    ours, einsum, matmul = min_times_alternating(runs, device, rounds)
    row = dict(head, **{"pass": "fwd+bwd"}, pgnface_ms=ours * 1e3, einsum_ms=einsum * 1e3, matmul_ms=matmul * 1e3)
    row["speedup"] = min(einsum, matmul) / ours
    if peak:
        # The backward reads the basis again and the upstream gradient [B, N, 3].
        moved += (N * 3 * K + B * N * 3 + B * K) * elem
        row["GB/s"] = moved / ours / 1e9
        row["%peak"] = 100.0 * row["GB/s"] / peak
    rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="B in {1, 64} only, shorter timing")
    parser.add_argument(
        "--models",
        default=",".join(m[0] for m in MODELS),
        help="comma-separated subset of: " + ", ".join(m[0] for m in MODELS),
    )
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=None, help="alternating calls per side (default: 7, 3 quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not (torch.cuda.is_available() and ops.cuda_built()):
        sys.exit("--device cuda needs a GPU and a CUDA build of pgnface")
    dtype = getattr(torch, args.dtype)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else QUICK_BATCHES if args.quick else BATCHES
    wanted = set(args.models.split(","))
    rounds = args.rounds or (3 if args.quick else 7)

    print(f"synthesize benchmark on {device_description(device)}, {args.dtype}, torch {torch.__version__}")
    peak = peak_bandwidth_gbps(device)
    if peak is None and device.type == "cpu":
        peak = cpu_read_bandwidth_gbps()
        print(f"CPU read bandwidth (torch.sum over 256 MiB, {torch.get_num_threads()} threads): {peak:.1f} GB/s")
    rows = []
    for name, N, K in MODELS:
        if name not in wanted:
            continue
        for B in batches:
            for row in bench_case(name, N, K, B, device, dtype, rounds, peak):
                rows.append(row)
                print(format_table([row], list(row)).splitlines()[-1], flush=True)
    columns = ["morphable", "N", "K", "B", "pass", "pgnface_ms", "einsum_ms", "matmul_ms", "speedup"]
    if any("GB/s" in r for r in rows):
        columns += ["GB/s", "%peak"]
    print()
    print(format_table(rows, columns))
    write_json(
        args.json,
        dict(benchmark="synthesize", device=device_description(device), dtype=args.dtype, env=environment(), rows=rows),
    )


if __name__ == "__main__":
    main()
