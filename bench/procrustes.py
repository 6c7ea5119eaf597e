"""Benchmark of pgnface.ops.svd3x3 against torch.linalg.svd and of similarity_align against roma.

    python -m bench.procrustes [--device cpu|cuda] [--quick] [--threads N] [--rounds N] [--json FILE]

svd3x3: forward, and forward+backward of ``(U @ V^T).sum() + S.sum()``, for batches of random 3x3
matrices, against ``torch.linalg.svd`` on the same matrices (``torch.linalg.svd`` synchronises with
the host on CUDA). similarity_align: P = 68 landmarks, forward and forward+backward of
``scale.sum() + R.sum() + t.sum()`` (gradients to src and dst) against roma's
``rigid_points_registration(compute_scaling=True)`` when roma is importable (``pip install roma``),
and against ``pgnface.ops.reference.similarity_align`` (centroids, einsum covariance,
``torch.linalg.svd``) otherwise. pgnface runs with its default arguments (``check_values=True``) and
again with ``check_values=False``. The two sides alternate call by call on the same inputs in one
process; each time is that side's minimum, and the ratio is the ratio of the minima, so that load
from other processes inflates neither side more than the other.
"""

import os
import time
from typing import Callable, Tuple

import torch

import pgnface.ops as ops
from bench.common import device_description, device_parser, environment, format_table, resolve_device, write_json

SVD_BATCHES = [1, 64, 4096, 65536, 1048576]
ALIGN_BATCHES = [1, 64, 4096, 65536]
QUICK_SKIP = 1048576  # --quick leaves out the largest batch
LANDMARKS = 68


def min_time_alternating(
    ours: Callable[[], object], peer: Callable[[], object], rounds: int, device
) -> Tuple[float, float]:
    """Minimum seconds per call of each side, the sides alternating call by call after one warm-up each."""

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    ours()
    peer()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, fn in enumerate((ours, peer)):
            best[side] = min(best[side], timed(fn))
    return best[0], best[1]


def rounds_for(B: int, rounds: int) -> int:
    """More rounds for cheap calls, whose minimum needs more samples to settle."""
    return rounds * 20 if B <= 64 else rounds


def fwd_bwd(fn, *inputs):
    leaves = [x.clone().requires_grad_(True) for x in inputs]

    def run():
        for leaf in leaves:
            leaf.grad = None
        out = fn(*leaves)
        sum(o.sum() for o in out).backward()

    return run


def svd_loss_outputs(fn):
    """fn(M) -> (U, S, V) turned into the benchmarked loss terms (U @ V^T, S)."""

    def run(M):
        U, S, V = fn(M)
        return U @ V.mT, S

    return run


def torch_svd(M):
    U, S, Vh = torch.linalg.svd(M)
    return U, S, Vh.mT


def row(op, B, P, pass_, checks, t_ours, baseline, t_base):
    return {
        "op": op,
        "B": B,
        "P": P,
        "pass": pass_,
        "check_values": checks,
        "pgnface_ms": t_ours * 1e3,
        "baseline": baseline,
        "baseline_ms": t_base * 1e3,
        "speedup": t_base / t_ours,
    }


def bench_svd(B, device, dtype, rounds):
    g = torch.Generator().manual_seed(0)
    M = torch.randn(B, 3, 3, generator=g).to(device=device, dtype=dtype)
    rows = []
    n = rounds_for(B, rounds)
    for checks in (True, False):
        ours = lambda x, c=checks: ops.svd3x3(x, check_values=c)  # noqa: E731
        with torch.no_grad():
            t = min_time_alternating(lambda f=ours: f(M), lambda: torch.linalg.svd(M), n, device)
        rows.append(row("svd3x3", B, "", "forward", checks, t[0], "torch.linalg.svd", t[1]))
        t = min_time_alternating(fwd_bwd(svd_loss_outputs(ours), M), fwd_bwd(svd_loss_outputs(torch_svd), M), n, device)
        rows.append(row("svd3x3", B, "", "fwd+bwd", checks, t[0], "torch.linalg.svd", t[1]))
    return rows


def align_peer():
    """(name, fn(src, dst) -> outputs): roma when importable, else the pure-torch reference."""
    try:
        import roma
    except ImportError:
        return "reference", lambda s, d: ops.reference.similarity_align(s, d)

    def peer(s, d):
        R, t, scale = roma.rigid_points_registration(s, d, compute_scaling=True)
        return scale, R, t

    return f"roma {roma.__version__}", peer


def bench_align(B, device, dtype, rounds):
    g = torch.Generator().manual_seed(1)
    src = torch.randn(B, LANDMARKS, 3, generator=g)
    R = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))[0]
    dst = 1.5 * src @ R.mT + torch.randn(B, 1, 3, generator=g) + 0.01 * torch.randn(src.shape, generator=g)
    src, dst = src.to(device=device, dtype=dtype), dst.to(device=device, dtype=dtype)
    name, peer = align_peer()
    rows = []
    n = rounds_for(B, rounds)
    for checks in (True, False):
        ours = lambda s, d, c=checks: ops.similarity_align(s, d, check_values=c)  # noqa: E731
        with torch.no_grad():
            t = min_time_alternating(lambda f=ours: f(src, dst), lambda: peer(src, dst), n, device)
        rows.append(row("similarity_align", B, LANDMARKS, "forward", checks, t[0], name, t[1]))
        t = min_time_alternating(fwd_bwd(ours, src, dst), fwd_bwd(peer, src, dst), n, device)
        rows.append(row("similarity_align", B, LANDMARKS, "fwd+bwd", checks, t[0], name, t[1]))
    return rows


def main(argv=None):
    parser = device_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help=f"leave out B = {QUICK_SKIP}, fewer rounds")
    parser.add_argument(
        "--ops", default="svd3x3,similarity_align", help="comma-separated subset of: svd3x3, similarity_align"
    )
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (both ops)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating calls per side (default: 15)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device, ops.cuda_built())
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 15)
    wanted = set(args.ops.split(","))

    def batches(default):
        if args.batches:
            return [int(b) for b in args.batches.split(",")]
        return [b for b in default if not (args.quick and b >= QUICK_SKIP)]

    load = [round(x, 2) for x in os.getloadavg()]
    print(f"procrustes benchmark on {device_description(device)}, {args.dtype}, torch {torch.__version__}")
    print(f"load average {load} on {os.cpu_count()} cores")
    rows = []
    plan = []
    if "svd3x3" in wanted:
        plan += [(bench_svd, B) for B in batches(SVD_BATCHES)]
    if "similarity_align" in wanted:
        plan += [(bench_align, B) for B in batches(ALIGN_BATCHES)]
    for bench, B in plan:
        for r in bench(B, device, dtype, rounds):
            rows.append(r)
            print(format_table([r], list(r)).splitlines()[-1], flush=True)
    columns = ["op", "B", "P", "pass", "check_values", "pgnface_ms", "baseline", "baseline_ms", "speedup"]
    print()
    print(format_table(rows, columns))
    env = dict(environment(), load_average_before=load, load_average_after=[round(x, 2) for x in os.getloadavg()])
    write_json(
        args.json,
        dict(benchmark="procrustes", device=device_description(device), dtype=args.dtype, env=env, rows=rows),
    )


if __name__ == "__main__":
    main()
