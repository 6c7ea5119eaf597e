"""Benchmark of pgnface.ops.svd3x3 against torch.linalg.svd and of similarity_align against its reference.

    python -m bench.procrustes [--device cpu|cuda] [--quick] [--json FILE]

svd3x3: forward, and forward+backward of ``(U @ V^T).sum() + S.sum()``, for
batches of random 3x3 matrices, against ``torch.linalg.svd`` on the same
matrices (``torch.linalg.svd`` synchronises with the host on CUDA).
similarity_align: P = 68 landmarks, forward and forward+backward of
``scale.sum() + R.sum() + t.sum()`` (gradients to src and dst) against
``pgnface.ops.reference.similarity_align`` (centroids, einsum covariance,
torch.linalg.svd). Both sides run on the same inputs in the same process.
"""

import torch

import pgnface.ops as ops
from bench.common import (
    device_description,
    device_parser,
    environment,
    format_table,
    resolve_device,
    time_call,
    write_json,
)

SVD_BATCHES = [1, 64, 4096, 65536, 1048576]
ALIGN_BATCHES = [1, 64, 4096, 65536]
QUICK_SKIP = 1048576  # --quick leaves out the largest batch
LANDMARKS = 68


def svd_fwd_bwd(fn, M):
    leaf = M.clone().requires_grad_(True)

    def run():
        leaf.grad = None
        U, S, V = fn(leaf)
        ((U @ V.mT).sum() + S.sum()).backward()

    return run


def torch_svd(M):
    U, S, Vh = torch.linalg.svd(M)
    return U, S, Vh.mT


def bench_svd(B, device, dtype, min_time):
    g = torch.Generator().manual_seed(0)
    M = torch.randn(B, 3, 3, generator=g).to(device=device, dtype=dtype)
    rows = []
    with torch.no_grad():
        ours = time_call(lambda: ops.svd3x3(M, check_values=False), device, min_time=min_time)
        ref = time_call(lambda: torch.linalg.svd(M), device, min_time=min_time)
    rows.append(
        dict(
            op="svd3x3",
            B=B,
            P="",
            **{"pass": "forward"},
            pgnface_ms=ours * 1e3,
            baseline="torch.linalg.svd",
            baseline_ms=ref * 1e3,
            speedup=ref / ours,
        )
    )
    ours = time_call(svd_fwd_bwd(lambda x: ops.svd3x3(x, check_values=False), M), device, min_time=min_time)
    ref = time_call(svd_fwd_bwd(torch_svd, M), device, min_time=min_time)
    rows.append(
        dict(
            op="svd3x3",
            B=B,
            P="",
            **{"pass": "fwd+bwd"},
            pgnface_ms=ours * 1e3,
            baseline="torch.linalg.svd",
            baseline_ms=ref * 1e3,
            speedup=ref / ours,
        )
    )
    return rows


def align_fwd_bwd(fn, src, dst):
    leaves = [src.clone().requires_grad_(True), dst.clone().requires_grad_(True)]

    def run():
        for leaf in leaves:
            leaf.grad = None
        scale, R, t = fn(*leaves)
        (scale.sum() + R.sum() + t.sum()).backward()

    return run


def bench_align(B, device, dtype, min_time):
    g = torch.Generator().manual_seed(1)
    src = torch.randn(B, LANDMARKS, 3, generator=g)
    R = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))[0]
    dst = 1.5 * src @ R.mT + torch.randn(B, 1, 3, generator=g) + 0.01 * torch.randn(src.shape, generator=g)
    src, dst = src.to(device=device, dtype=dtype), dst.to(device=device, dtype=dtype)
    ours_fn = lambda s, d: ops.similarity_align(s, d, check_values=False)  # noqa: E731
    ref_fn = ops.reference.similarity_align
    rows = []
    with torch.no_grad():
        ours = time_call(lambda: ours_fn(src, dst), device, min_time=min_time)
        ref = time_call(lambda: ref_fn(src, dst), device, min_time=min_time)
    rows.append(
        dict(
            op="similarity_align",
            B=B,
            P=LANDMARKS,
            **{"pass": "forward"},
            pgnface_ms=ours * 1e3,
            baseline="reference",
            baseline_ms=ref * 1e3,
            speedup=ref / ours,
        )
    )
    ours = time_call(align_fwd_bwd(ours_fn, src, dst), device, min_time=min_time)
    ref = time_call(align_fwd_bwd(ref_fn, src, dst), device, min_time=min_time)
    rows.append(
        dict(
            op="similarity_align",
            B=B,
            P=LANDMARKS,
            **{"pass": "fwd+bwd"},
            pgnface_ms=ours * 1e3,
            baseline="reference",
            baseline_ms=ref * 1e3,
            speedup=ref / ours,
        )
    )
    return rows


def main(argv=None):
    parser = device_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help=f"leave out B = {QUICK_SKIP}, shorter timing")
    parser.add_argument(
        "--ops", default="svd3x3,similarity_align", help="comma-separated subset of: svd3x3, similarity_align"
    )
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (both ops)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device, ops.cuda_built())
    dtype = getattr(torch, args.dtype)
    min_time = 0.1 if args.quick else 0.3
    wanted = set(args.ops.split(","))

    def batches(default):
        if args.batches:
            return [int(b) for b in args.batches.split(",")]
        return [b for b in default if not (args.quick and b >= QUICK_SKIP)]

    print(f"procrustes benchmark on {device_description(device)}, {args.dtype}, torch {torch.__version__}")
    rows = []
    plan = []
    if "svd3x3" in wanted:
        plan += [(bench_svd, B) for B in batches(SVD_BATCHES)]
    if "similarity_align" in wanted:
        plan += [(bench_align, B) for B in batches(ALIGN_BATCHES)]
    for bench, B in plan:
        for row in bench(B, device, dtype, min_time):
            rows.append(row)
            print(format_table([row], list(row)).splitlines()[-1], flush=True)
    columns = ["op", "B", "P", "pass", "pgnface_ms", "baseline", "baseline_ms", "speedup"]
    print()
    print(format_table(rows, columns))
    write_json(
        args.json,
        dict(benchmark="procrustes", device=device_description(device), dtype=args.dtype, env=environment(), rows=rows),
    )


if __name__ == "__main__":
    main()
