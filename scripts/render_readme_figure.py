"""Renders docs/_static/rasterizer.jpg, the rasterizer page's picture, with pgnface's own ops.

    python scripts/render_readme_figure.py [--out docs/_static/rasterizer.png]

Needs the BFM mesh of the real face data ($PGNFACE_SHARED_DATA) and OpenCV.
Three panels of the BFM no-neck mesh (76k triangles) at 512 x 512: Lambertian
shading from interpolated vertex normals, then, magnified around the eye, the
triangle-id buffer and the perspective-correct barycentrics as RGB.
"""

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import torch

import pgnface.ops as ops

ROOT = Path(__file__).resolve().parents[1]


def vertex_normals(verts, tris):
    """Area-weighted unit vertex normals of a mesh. verts [N,3], tris [T,3]."""
    v = verts[tris.long()]
    face_n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=1)
    normals = torch.zeros_like(verts).index_add_(0, tris.long().reshape(-1), face_n.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(normals, dim=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "_static" / "rasterizer.jpg"))
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("PGNFACE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    data = np.load(data_dir / "bfm_mesh.npz")
    verts = torch.from_numpy(data["noneck_mean"]).double()
    tris = torch.from_numpy(data["noneck_triangles"]).int()
    # The BFM winds clockwise seen from +z: flip to counter-clockwise so the
    # normals point out of the face.
    tris = tris[:, [0, 2, 1]].contiguous()
    size = args.size

    # A slightly turned head, orthographic, face filling most of the image.
    yaw = np.deg2rad(-25.0)
    rot = torch.tensor([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]], dtype=torch.float64)
    centre = (verts.max(0).values + verts.min(0).values) / 2
    posed = (verts - centre) @ rot.T
    scale = 0.42 * size / posed[:, :2].abs().max()
    pixels = torch.stack([posed[:, 0] * scale + size / 2, -posed[:, 1] * scale + size / 2, posed[:, 2]], -1)
    pos = ops.clip_from_pixels(pixels, size, depth_scale=-1.0 / float(posed[:, 2].abs().max()))[None]
    frag = ops.rasterize(pos.float(), tris, size, cull="none")

    normals = vertex_normals(posed, tris).float()
    n = ops.interpolate(normals, frag, tris)[0]
    n = torch.nn.functional.normalize(n, dim=-1)
    light = torch.nn.functional.normalize(torch.tensor([-0.4, 0.5, 0.8]), dim=0)
    diffuse = (n @ light).clamp(min=0)
    skin = torch.tensor([0.62, 0.74, 0.93])  # BGR
    shaded = (0.15 + 0.85 * diffuse)[..., None] * skin
    mask = frag.mask[0]
    background = torch.full_like(shaded, 1.0)
    panel_shaded = torch.where(mask[..., None], shaded, background)

    # The eye region rendered again at 8x magnification (a 64 x 64-pixel window
    # of the view above), where single triangles and their barycentrics show.
    magnify, r0, c0 = 8.0, 0.33 * size, 0.30 * size
    zoomed = pixels.clone()
    zoomed[:, 0] = (pixels[:, 0] - c0) * magnify
    zoomed[:, 1] = (pixels[:, 1] - r0) * magnify
    zpos = ops.clip_from_pixels(zoomed, size, depth_scale=-1.0 / float(posed[:, 2].abs().max()))[None]
    zfrag = ops.rasterize(zpos.float(), tris, size)
    zmask = zfrag.mask[0][..., None]
    rng = np.random.default_rng(0)
    tri_colours = torch.from_numpy(rng.uniform(0.25, 1.0, size=(tris.shape[0], 3))).float()
    panel_ids = torch.where(zmask, tri_colours[zfrag.tri_id[0].long().clamp(min=0)], background)
    panel_bary = torch.where(zmask, zfrag.bary[0], background)

    def to_u8(panel):
        return (panel.clamp(0, 1).numpy() * 255).astype(np.uint8)

    image = np.concatenate([to_u8(panel_shaded), to_u8(panel_ids), to_u8(panel_bary)], axis=1)
    cv2.rectangle(image, (int(c0), int(r0)), (int(c0 + size / magnify), int(r0 + size / magnify)), (60, 60, 200), 1)
    labels = ["shaded (interpolated normals)", "triangle id (8x, red box)", "barycentrics (8x)"]
    for i, text in enumerate(labels):
        cv2.rectangle(image, (i * size + 6, size - 34), (i * size + 12 + 11 * len(text), size - 6), (255, 255, 255), -1)
        cv2.putText(
            image, text, (i * size + 12, size - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 40, 40), 1, cv2.LINE_AA
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(
        f"wrote {args.out}: {tris.shape[0]} triangles at {size} x {size}, "
        f"{mask.float().mean():.0%} of the pixels covered"
    )


if __name__ == "__main__":
    main()
