"""`pgnface reconstruct` (registered by pgnface.cli)."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np


def _inputs(path: Path):
    """('images', [paths]) or ('video', path) for an image, a folder of images or a video file."""
    from .reconstruct import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return "images", files
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", path
    return "images", [path]


def _run(args) -> int:
    from tqdm import tqdm

    from ..model import MorphableModel
    from .reconstruct import Reconstructor, read_image, write_face

    try:
        kind, items = _inputs(Path(args.input))
        boxes = json.loads(Path(args.boxes).read_text()) if args.boxes else {}
        model = MorphableModel.load(args.model) if args.model else None
        recon = Reconstructor(args.checkpoint, model, device=args.device)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as err:
        print(f"pgnface reconstruct: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    triangles = recon.model.triangles.cpu().numpy()
    faces_written, problems = 0, 0

    def process(image, stem, frame_boxes):
        nonlocal faces_written, problems
        try:
            results = recon.faces(image, frame_boxes)
        except (ValueError, RuntimeError) as err:
            print(f"pgnface reconstruct: {stem}: {err}", file=sys.stderr)
            problems += 1
            return None
        if not results:
            print(f"pgnface reconstruct: {stem}: no face found", file=sys.stderr)
            problems += 1
        for j, r in enumerate(results):
            write_face(r, triangles, out, f"{stem}_face{j}")
        faces_written += len(results)
        overlay = recon.overlay(image, results)
        cv2.imwrite(str(out / f"{stem}_overlay.png"), overlay)
        return overlay

    if kind == "images":
        for path in tqdm(items, desc="reconstructing", unit="img", disable=len(items) < 4):
            try:
                image = read_image(path)
            except ValueError as err:
                print(f"pgnface reconstruct: {err}", file=sys.stderr)
                problems += 1
                continue
            process(image, path.stem, boxes.get(path.name))
    else:
        capture = cv2.VideoCapture(str(items))
        if not capture.isOpened():
            print(f"pgnface reconstruct: {items}: the video cannot be opened", file=sys.stderr)
            return 2
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        writer, index = None, 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            overlay = process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), f"{items.stem}_{index:05d}",
                              boxes.get(str(index)))
            if overlay is not None:
                if writer is None:
                    h, w = overlay.shape[:2]
                    writer = cv2.VideoWriter(str(out / f"{items.stem}_overlay.mp4"),
                                             cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(overlay)
            index += 1
        capture.release()
        if writer is not None:
            writer.release()
    print(f"reconstructed {faces_written} face(s) into {out}" + (f"; {problems} input(s) had problems" if problems else ""))
    return 0 if faces_written else 1


def add_reconstruct_parser(subparsers) -> None:
    rec = subparsers.add_parser(
        "reconstruct", help="reconstruct the faces in images, a folder or a video",
        description="Finds every face (OpenCV's frontal-face detector, or boxes from --boxes), reconstructs it "
                    "with a trained PGN network and writes per face: OBJ (vertex colours from the albedo) and PLY "
                    "meshes, 68 landmarks and pose angles (JSON, image pixels), coefficients (.npz); per image an "
                    "overlay PNG; for a video an overlay MP4. Exit code 0 when at least one face was reconstructed.")
    rec.add_argument("input", help="an image, a folder of images, or a video file")
    rec.add_argument("-o", "--output", default="reconstruction", help="output folder (default ./reconstruction)")
    rec.add_argument("--checkpoint", required=True,
                     help="trained network (pgnface train's model.pt); no reference checkpoint is bundled yet")
    rec.add_argument("--model", default=None, help="the 3DMM file the checkpoint was trained with (default built-in)")
    rec.add_argument("--boxes", default=None,
                     help='JSON {"image.jpg": [[x0, y0, x1, y1], ...]} (video: frame numbers as keys) instead of '
                          "the detector")
    rec.add_argument("--device", default="cpu", help="torch device (default cpu)")
    rec.set_defaults(run=_run)
