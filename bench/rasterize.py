"""Benchmark of pgnface.ops.rasterize + interpolate on a real face mesh.

    python -m bench.rasterize [--device cpu|cuda] [--quick] [--json FILE]

The mesh is the BFM no-neck mesh (38,365 vertices, 76,073 triangles), bfm_mesh.npz of
the real face data ($PGNFACE_SHARED_DATA); without it, a generated
ellipsoid mesh of the same size stands in (the table says which). Each case
renders B frontal faces filling ~80% of the image: rasterize + interpolate of
3 channels, forward and forward+backward (gradients to positions and colours).

Baselines, measured in the same run:
- the pure-PyTorch reference (pgnface.ops.reference), which is O(pixels x
  triangles), so it runs on a reduced case (64 x 64, the first 3000 triangles)
  next to pgnface on the same reduced case;
- nvdiffrast (CUDA) and PyTorch3D (rasterize_meshes) when they are importable
  (optional; never dependencies of pgnface).
On the CPU the table also gives single-thread milliseconds per 224 x 224 image.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

import pgnface.ops as ops
from bench.common import (
    device_description,
    environment,
    format_table,
    time_call,
    write_json,
)

RESOLUTIONS = [224, 512]
BATCHES = [1, 16, 64]


def load_mesh():
    """(vertices [N,3] float64, triangles [T,3] int32, source name)."""
    root = Path(os.environ.get("PGNFACE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = root / "bfm_mesh.npz"
    if path.exists():
        data = np.load(path)
        return (
            torch.from_numpy(data["noneck_mean"]).double(),
            torch.from_numpy(data["noneck_triangles"]).int(),
            "BFM no-neck (real)",
        )
    # Stand-in of the same size: a UV-sphere squashed into a head-like ellipsoid.
    rows, cols = 139, 276
    theta = torch.linspace(0.05, np.pi - 0.05, rows, dtype=torch.float64)
    phi = torch.linspace(-np.pi, np.pi, cols, dtype=torch.float64)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    verts = torch.stack([70 * t.sin() * p.sin(), 100 * t.cos(), 60 * t.sin() * p.cos()], -1).reshape(-1, 3)
    idx = torch.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, tris.int(), "generated ellipsoid (no shared data)"


def frontal_clip(verts, resolution, batch, device, dtype=torch.float32):
    """Orthographic clip-space positions of a frontal face filling ~80% of the image."""
    centre = (verts.max(0).values + verts.min(0).values) / 2
    extent = (verts - centre).abs().max()
    scale = 0.4 * resolution / extent
    pixels = torch.stack(
        [
            (verts[:, 0] - centre[0]) * scale + resolution / 2,
            -(verts[:, 1] - centre[1]) * scale + resolution / 2,
            verts[:, 2] - centre[2],
        ],
        -1,
    )
    depth_scale = -1.0 / float((verts[:, 2] - centre[2]).abs().max())
    pos = ops.clip_from_pixels(pixels, resolution, depth_scale=depth_scale)
    # Jitter each batch item a little so the images are not identical.
    g = torch.Generator().manual_seed(0)
    shift = (torch.rand(batch, 1, 4, generator=g, dtype=torch.float64) - 0.5) * 0.02
    shift[..., 2:] = 0
    return (pos[None] + shift).to(device=device, dtype=dtype).contiguous()


def render_fn(pos, tris, colours, resolution):
    def run():
        frag = ops.rasterize(pos, tris, resolution, check_values=False)
        return ops.interpolate(colours, frag, tris, check_values=False)

    return run


def render_backward_fn(pos, tris, colours, resolution):
    pos = pos.clone().requires_grad_(True)
    colours = colours.clone().requires_grad_(True)

    def run():
        pos.grad = colours.grad = None
        frag = ops.rasterize(pos, tris, resolution, check_values=False)
        ops.interpolate(colours, frag, tris, check_values=False).sum().backward()

    return run


def reference_fns(pos, tris, colours, resolution):
    def forward():
        tri_id, bary, _ = ops.reference.rasterize(pos, tris, resolution)
        return ops.reference.interpolate(colours, tri_id, bary, tris)

    p = pos.clone().requires_grad_(True)
    c = colours.clone().requires_grad_(True)

    def backward():
        p.grad = c.grad = None
        tri_id, bary, _ = ops.reference.rasterize(p, tris, resolution)
        ops.reference.interpolate(c, tri_id, bary, tris).sum().backward()

    return forward, backward


def optional_baselines(device):
    """Names of the third-party rasterizers importable here."""
    found = []
    if device.type == "cuda":
        try:
            import nvdiffrast.torch  # noqa: F401

            found.append("nvdiffrast")
        except ImportError:
            pass
    try:
        import pytorch3d.renderer  # noqa: F401

        found.append("pytorch3d")
    except ImportError:
        pass
    return found


def nvdiffrast_fn(pos, tris, colours, resolution, backward):
    import nvdiffrast.torch as dr

    ctx = dr.RasterizeCudaContext()
    p = pos.clone().requires_grad_(backward)
    c = colours.clone().requires_grad_(backward)

    def run():
        rast, _ = dr.rasterize(ctx, p, tris, (resolution, resolution))
        img, _ = dr.interpolate(c, rast, tris)
        if backward:
            p.grad = c.grad = None
            img.sum().backward()

    return run


def pytorch3d_fn(pos, tris, colours, resolution, backward):
    from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
    from pytorch3d.structures import Meshes

    # PyTorch3D's NDC has +x left, +y up; flip x and y so the image matches.
    verts = torch.stack([-pos[..., 0], -pos[..., 1], pos[..., 2]], -1).requires_grad_(backward)
    c = colours.clone().requires_grad_(backward)
    meshes = Meshes(verts=list(verts), faces=[tris.long()] * pos.shape[0])

    def run():
        p2f, _, bary, _ = rasterize_meshes(
            meshes, image_size=resolution, faces_per_pixel=1, blur_radius=0.0, bin_size=0
        )
        face_colours = c[tris.long()]  # [T, 3, C]
        img = (bary[..., 0, :, None] * face_colours[p2f[..., 0].clamp(min=0)]).sum(-2)
        if backward:
            c.grad = None
            img.sum().backward()

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="224 x 224 and B in {1, 16} only")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not (torch.cuda.is_available() and ops.cuda_built()):
        sys.exit("--device cuda needs a GPU and a CUDA build of pgnface")
    verts, tris_cpu, source = load_mesh()
    tris = tris_cpu.to(device)
    min_time = 0.1 if args.quick else 0.3
    resolutions = [224] if args.quick else RESOLUTIONS
    batches = [1, 16] if args.quick else BATCHES
    print(
        f"rasterize + interpolate benchmark on {device_description(device)}, float32, "
        f"mesh: {source}, {verts.shape[0]} vertices, {tris.shape[0]} triangles"
    )
    third_party = optional_baselines(device)
    rows = []
    colours_all = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(1)).to(device)

    def record(row):
        rows.append(row)
        print(format_table([row], list(row)).splitlines()[-1], flush=True)

    for res in resolutions:
        for B in batches:
            pos = frontal_clip(verts, res, B, device)
            for name, make in (("forward", render_fn), ("fwd+bwd", render_backward_fn)):
                t = time_call(make(pos, tris, colours_all, (res, res)), device, min_time=min_time)
                row = {"case": f"{res}x{res}", "B": B, "pass": name, "pgnface_ms": t * 1e3, "ms_per_image": t * 1e3 / B}
                for lib in third_party:
                    fn = nvdiffrast_fn if lib == "nvdiffrast" else pytorch3d_fn
                    try:
                        tb = time_call(
                            fn(pos, tris, colours_all, res, name == "fwd+bwd"), device, min_time=min_time, max_repeat=5
                        )
                        row[f"{lib}_ms"] = tb * 1e3
                        row[f"vs_{lib}"] = tb / t
                    except Exception as err:  # a third-party failure must not hide our numbers
                        row[f"{lib}_ms"] = f"failed: {type(err).__name__}"
                record(row)

    if device.type == "cpu":
        # Single-thread time per 224 x 224 image, the number the field quotes.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pos = frontal_clip(verts, 224, 1, device)
        t = time_call(render_fn(pos, tris, colours_all, (224, 224)), device, min_time=min_time)
        t_rast = time_call(lambda: ops.rasterize(pos, tris, 224, check_values=False), device, min_time=min_time)
        torch.set_num_threads(threads)
        record(
            {
                "case": "224x224, 1 thread",
                "B": 1,
                "pass": "rasterize only",
                "pgnface_ms": t_rast * 1e3,
                "ms_per_image": t_rast * 1e3,
            }
        )
        record({"case": "224x224, 1 thread", "B": 1, "pass": "forward", "pgnface_ms": t * 1e3, "ms_per_image": t * 1e3})

    # Reduced case where the O(pixels x triangles) reference can run.
    small_res, small_tris = 64, tris[:3000]
    pos = frontal_clip(verts, small_res, 1, device)
    ref_fwd, ref_bwd = reference_fns(pos, small_tris, colours_all, (small_res, small_res))
    for name, ours, theirs in (
        ("forward", render_fn(pos, small_tris, colours_all, (small_res, small_res)), ref_fwd),
        ("fwd+bwd", render_backward_fn(pos, small_tris, colours_all, (small_res, small_res)), ref_bwd),
    ):
        t = time_call(ours, device, min_time=min_time)
        tr = time_call(theirs, device, min_time=min_time, max_repeat=5)
        record(
            {
                "case": "64x64, 3000 tris",
                "B": 1,
                "pass": name,
                "pgnface_ms": t * 1e3,
                "ms_per_image": t * 1e3,
                "reference_ms": tr * 1e3,
                "vs_reference": tr / t,
            }
        )

    columns = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    print()
    print(format_table(rows, columns))
    write_json(
        args.json,
        dict(benchmark="rasterize", device=device_description(device), mesh=source, env=environment(), rows=rows),
    )


if __name__ == "__main__":
    main()
