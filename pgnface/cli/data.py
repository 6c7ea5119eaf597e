"""`pgnface data fit / profile`: 3D labels for real faces by fitting, and face profiling.

    pgnface data fit 300w/ --subset afw,helen_train -o fit300w.npz
    pgnface data profile fit300w.npz -o profiled/ --yaw-steps 15,30,45

300-W, HELEN, AFW and YouTube Faces are for non-commercial research use only;
the fitted labels and the profiled images derived from them are too, and their
files say so.
"""

import json
import time
from pathlib import Path

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, UsageError, input_errors

VALIDATION_GROUPS = ("helen_test", "test")  # never training data (the training config refuses them too)
FIT_TERMS = "fitted to 300-W / YouTube Faces labels: non-commercial research use only, like the source labels"


def add_parser(subparsers) -> None:
    """Adds `data` (with `fit` and `profile`) to the pgnface command line."""
    parser = subparsers.add_parser(
        "data",
        help="3D labels for real faces (fit) and face profiling (profile)",
        description="Tools that make training data from real labelled faces.",
    )
    sub = parser.add_subparsers(dest="protocol", required=True)
    fit = sub.add_parser(
        "fit",
        help="fit the 3DMM to every labelled face of a 300-W-layout folder",
        description="Fits the morphable model (identity, expression, weak-perspective pose) to the 68 "
        "labelled landmarks of every face of a 300-W-layout folder (landmarks.npz, or images + .pts), the "
        "jaw handled as the visible outline, and writes a cache (.npz) of 3D landmarks, coefficients, pose "
        "and fit residuals. Fitting the validation split (helen_test) is fine for evaluation; training never "
        "reads it.",
    )
    fit.add_argument("folder", help="a 300-W-layout folder")
    fit.add_argument("-o", "--output", required=True, help="the cache file to write (.npz)")
    fit.add_argument("--subset", default=None, help="comma-separated subsets of a landmarks.npz (default: all)")
    fit.add_argument("--morphable", default=None, help="3DMM file (.npz, .mat or .pkl; default: built-in)")
    fit.add_argument("--rounds", type=int, default=6, help="alternating pose / coefficient rounds (default 6)")
    fit.add_argument("--iterations", type=int, default=150, help="Adam steps of the joint refinement (default 150)")
    fit.add_argument("--noise", type=float, default=0.02, help="label noise, fraction of the face size (default 0.02)")
    fit.add_argument("--no-contour", action="store_true", help="fit the jaw labels to the 3D jaw (no outline handling)")
    fit.add_argument("--limit", type=int, default=0, help="fit only the first N faces of each subset (0: all)")
    fit.add_argument(
        "--training-only",
        action="store_true",
        help="refuse validation subsets (helen_test, test) instead of fitting them",
    )
    fit.set_defaults(run=run_fit)
    profile = sub.add_parser(
        "profile",
        help="turn fitted faces to larger yaw (300W-LP-style face profiling)",
        description="Rotates every fitted face of a `pgnface data fit` cache to larger yaw, re-renders the face "
        "from its own image texture, fills the old face region of the background by inpainting, and writes the "
        "images with their labels in the 300W-LP layout (NAME.jpg + NAME.mat) that training's data.folder "
        "reads. Validation subsets (helen_test, test) are skipped unless --include-validation is given.",
    )
    profile.add_argument("cache", help="a cache written by `pgnface data fit`")
    profile.add_argument("-o", "--output", required=True, help="output folder")
    profile.add_argument(
        "--yaw-steps",
        default="15,30,45",
        help="yaw increments in degrees, away from the current yaw (default 15,30,45)",
    )
    profile.add_argument("--limit", type=int, default=0, help="profile only the first N faces (0: all)")
    profile.add_argument("--data", default=None, help="the fitted 300-W folder, if it moved since fitting")
    profile.add_argument(
        "--max-residual",
        type=float,
        default=10.0,
        help="skip faces fitted worse than this (%% of the eye distance; default 10)",
    )
    profile.add_argument(
        "--include-validation",
        action="store_true",
        help="also profile validation subsets (for evaluation only: never train on them)",
    )
    profile.add_argument("--sheet", type=int, default=24, help="faces on contact_sheet.png (default 24)")
    profile.set_defaults(run=run_profile)


def _subsets(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else []


def _group(name: str) -> str:
    return name.split("/")[0] if "/" in name else ""


def run_fit(args) -> int:
    """Fits every face of args.folder and writes the cache args.output."""
    checks.in_range("--rounds", args.rounds, 0)
    checks.in_range("--iterations", args.iterations, 0)
    checks.in_range("--limit", args.limit, 0)
    if not args.noise > 0:
        raise UsageError(f"--noise must be positive (a fraction of the face size), got {args.noise}")
    if not str(args.output).endswith(".npz"):
        raise UsageError(f"-o {args.output}: the cache is an .npz file; give a name ending in .npz")
    subsets = _subsets(args.subset)
    if args.training_only:
        held = [s for s in subsets if s in VALIDATION_GROUPS]
        if held or not subsets:
            raise UsageError(
                f"--training-only: {held or 'all subsets'} include the validation split; name training subsets "
                "with --subset (e.g. afw,helen_train)"
            )
    out = outputs.file(args.output)
    import numpy as np
    import torch
    from tqdm import tqdm

    from pgnface.data.fitting import ContourMatcher, FitConfig, fit_landmarks
    from pgnface.eval.face300w import load_300w
    from pgnface.morphable import MorphableModel

    with input_errors(f"--morphable {args.morphable}", kinds=LOAD_ERRORS):
        model = MorphableModel.load(args.morphable) if args.morphable else MorphableModel.builtin()
    with input_errors(kinds=(ValueError, FileNotFoundError, OSError)):
        groups = {s: load_300w(args.folder, subset=s) for s in subsets} if subsets else {"": load_300w(args.folder)}
    if not subsets:  # one batch per subset all the same, so batches stay one kind of face
        faces = groups.pop("")
        for face in faces:
            groups.setdefault(_group(face.name), []).append(face)
    config = FitConfig(rounds=args.rounds, iterations=args.iterations, noise=args.noise, contour=not args.no_contour)
    with input_errors("fitting"):
        matcher = ContourMatcher(model)
    rows, start = {}, time.perf_counter()
    for group, faces in groups.items():
        faces = faces[: args.limit] if args.limit else faces
        labels = torch.from_numpy(np.stack([f.landmarks for f in faces])).float()
        with tqdm(total=config.rounds + config.iterations, desc=f"fitting {group or 'faces'} ({len(faces)})") as bar:
            with input_errors(f"{args.folder}"):
                result = fit_landmarks(model, labels, config, matcher, progress=bar.update)
        arrays = result.arrays()
        arrays["names"] = np.array([f.name for f in faces])
        arrays["subset"] = np.array([group] * len(faces))
        arrays["labels"] = labels.numpy()
        for key, value in arrays.items():
            rows.setdefault(key, []).append(value)
        io, px = arrays["residual_io"], arrays["residual_px"]
        print(
            f"{group or 'faces'}: {len(faces)} faces, fit residual median {np.median(io):.2f} % of the eye "
            f"distance (mean {io.mean():.2f} %, median {np.median(px):.2f} px)"
        )
    seconds = time.perf_counter() - start
    data = {key: np.concatenate(values) for key, values in rows.items()}
    meta = {
        "root": str(Path(args.folder).absolute()),
        "morphable": model.name,
        "morphable_file": str(Path(args.morphable).absolute()) if args.morphable else "",
        "config": vars(config),
        "seconds": seconds,
        "data_terms": FIT_TERMS,
        "validation_groups": [g for g in groups if g in VALIDATION_GROUPS],
        "coordinates": "image pixels, pixel centres at integer + 0.5; depth away from the camera",
    }
    data["meta"] = np.array(json.dumps(meta))
    with open(out, "wb") as f:
        np.savez(f, **data)
    print(f"fitted {len(data['names'])} faces in {seconds:.1f} s; wrote {out}")
    return 0


def run_profile(args) -> int:
    """Profiles the faces of the cache args.cache into args.output."""
    checks.in_range("--limit", args.limit, 0)
    checks.in_range("--sheet", args.sheet, 0)
    try:
        steps = [float(s) for s in _subsets(args.yaw_steps)]
    except ValueError:
        raise UsageError(f"--yaw-steps {args.yaw_steps}: expected comma-separated degrees, e.g. 15,30,45") from None
    if not steps or not all(0 <= s <= 90 for s in steps):
        raise UsageError(f"--yaw-steps {args.yaw_steps}: expected comma-separated degrees in [0, 90], e.g. 15,30,45")
    cache = checks.input_file(args.cache, "CACHE")
    out = outputs.folder(args.output)
    import numpy as np
    import torch
    from tqdm import tqdm

    from pgnface.data.profiling import DATA_TERMS, profile_face, write_profiled
    from pgnface.io.images import read_image
    from pgnface.io.overlays import contact_sheet, draw_landmarks
    from pgnface.morphable import MorphableModel

    keys = ("names", "subset", "id_coeffs", "exp_coeffs", "scale", "rotation", "translation", "residual_io", "meta")
    try:
        with np.load(cache) as f:
            data = {k: f[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise UsageError(f"CACHE {cache}: not a `pgnface data fit` cache ({err})") from None
    meta = json.loads(str(data["meta"]))
    root = Path(args.data or meta["root"])
    with input_errors(f"CACHE {cache}: its 3DMM", kinds=LOAD_ERRORS):
        model = MorphableModel.load(meta["morphable_file"]) if meta.get("morphable_file") else MorphableModel.builtin()
    if model.name != meta["morphable"] or model.num_id != data["id_coeffs"].shape[1]:
        raise UsageError(f"CACHE {cache}: fitted with {meta['morphable']}, which cannot be loaded as it was")
    order = [
        i
        for i in range(len(data["names"]))
        if (args.include_validation or str(data["subset"][i]) not in VALIDATION_GROUPS)
        and float(data["residual_io"][i]) <= args.max_residual
    ]
    skipped = len(data["names"]) - len(order)
    order = order[: args.limit] if args.limit else order
    if not order:
        raise UsageError(
            f"CACHE {cache}: no face to profile (validation faces and residuals above --max-residual are skipped)"
        )
    tiles, written = [], 0
    for i in tqdm(order, desc="profiling", unit="face"):
        name = str(data["names"][i])
        with input_errors(f"--data {root}", kinds=(ValueError, FileNotFoundError, OSError)):
            image = read_image(root / name)
        faces = profile_face(
            image,
            model,
            torch.from_numpy(data["id_coeffs"][i]),
            torch.from_numpy(data["exp_coeffs"][i]),
            float(data["scale"][i]),
            torch.from_numpy(data["rotation"][i]),
            torch.from_numpy(data["translation"][i]),
            steps,
        )
        stem = Path(name).with_suffix("")
        for face in faces:
            written_name = f"{stem.name}_yaw{face.yaw_step:+03.0f}"
            extras = {"source": name, "model": model.name, "fit_residual_io": float(data["residual_io"][i])}
            write_profiled(face, out / stem.parent, written_name, data["id_coeffs"][i], data["exp_coeffs"][i], extras)
            written += 1
            if len(tiles) < args.sheet:
                import cv2

                defined = np.isfinite(face.landmarks3d).all(1)
                bgr = np.ascontiguousarray(face.image[..., ::-1])
                tile = draw_landmarks(bgr, face.landmarks3d[defined, :2], face.visible[defined], 2)
                tiles.append(cv2.resize(tile, (192, 192), interpolation=cv2.INTER_AREA))
    (out / "profiling.json").write_text(
        json.dumps(
            {
                "cache": str(cache.absolute()),
                "faces": len(order),
                "images": written,
                "yaw_steps": steps,
                "morphable": model.name,
                "background": "original image, old face region inpainted (Telea) and blurred",
                "data_terms": DATA_TERMS,
            },
            indent=1,
        )
    )
    if tiles:
        outputs.write_image(out / "contact_sheet.png", contact_sheet(tiles, columns=6))
    print(
        f"profiled {len(order)} faces into {written} images in {out} ({skipped} skipped: validation or residual); "
        "derived images keep the source's terms: non-commercial research use only"
    )
    return 0
