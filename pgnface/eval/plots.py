"""Small plots drawn with OpenCV (no plotting library needed)."""

from typing import Dict, Sequence

import cv2
import numpy as np

from pgnface.io.crops import crop, image_to_crop, landmark_crop_box

COLOURS = [(200, 90, 30), (40, 160, 40), (30, 30, 200), (150, 60, 160), (20, 150, 200)]  # BGR


def error_distribution_png(
    errors: Dict[str, Sequence[float]],
    path,
    title: str = "",
    x_label: str = "NME (%)",
    x_max: float = 0.0,
    size=(640, 420),
) -> None:
    """Draws cumulative error distribution curves (fraction of images with error <= x), one per label.

    Args:
        errors: {label: per-image errors}; empty lists are skipped.
        path: the PNG file to write.
        title: text above the plot.
        x_label: the x axis' label.
        x_max: the x axis' end (0: 1.1 x the largest error).
        size: (width, height) in pixels.

    Raises:
        OSError: the file cannot be written.
    """
    width, height = size
    left, right, top, bottom = 60, 20, 40, 50
    img = np.full((height, width, 3), 255, np.uint8)
    values = [np.sort(np.asarray(v, dtype=np.float64)) for v in errors.values() if len(v)]
    if x_max <= 0:
        x_max = max([float(v.max()) for v in values] + [1.0]) * 1.1
    pw, ph = width - left - right, height - top - bottom

    def to_px(x, y):
        return int(left + x / x_max * pw), int(top + (1 - y) * ph)

    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for i in range(6):
        x = x_max * i / 5
        cv2.putText(
            img,
            f"{x:.1f}",
            (to_px(x, 0)[0] - 12, top + ph + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        y = i / 5
        cv2.putText(
            img, f"{y:.1f}", (left - 32, to_px(0, y)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
        )
        cv2.line(img, (left, to_px(0, y)[1]), (left + pw, to_px(0, y)[1]), (225, 225, 225), 1)
    cv2.putText(
        img, x_label, (left + pw // 2 - 30, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
    )
    cv2.putText(img, title, (left, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (label, v) in enumerate(errors.items()):
        v = np.sort(np.asarray(v, dtype=np.float64))
        colour = COLOURS[k % len(COLOURS)]
        if len(v):
            xs = np.concatenate([[0.0], np.repeat(np.minimum(v, x_max), 2), [x_max]])
            ys = np.concatenate([[0.0, 0.0], np.repeat(np.arange(1, len(v) + 1) / len(v), 2)[:-1], [1.0]])[: len(xs)]
            pts = np.array([to_px(x, y) for x, y in zip(xs, ys)], np.int32)
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(
            img,
            f"{label} ({len(v)})",
            (left + pw - 150, top + 20 + 18 * k),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            colour,
            1,
            cv2.LINE_AA,
        )
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def landmark_sheet(samples, result, tile: int = 200, columns: int = 5, limit: int = 50) -> np.ndarray:
    """BGR contact sheet: each image's crop with ground-truth (green) and predicted (red) 2D landmarks.

    Args:
        samples: the AFLWSample list that was evaluated.
        result: its EvalResult (predictions in image pixels).
        tile: tile side in pixels.
        columns: tiles per row.
        limit: at most this many images (the worst first).

    Returns:
        [rows tile, columns tile, 3] uint8 BGR (empty tiles black).
    """

    by_name = {s.name: s for s in samples}
    rows = sorted(result.per_image, key=lambda r: -r["nme2d"])[:limit]
    tiles = []
    for r in rows:
        s = by_name[r["name"]]
        box = landmark_crop_box(s.landmarks[:, :2])
        image = np.ascontiguousarray(crop(s.image, box, tile)[..., ::-1])
        for points, colour in (
            (s.landmarks[:, :2], (60, 200, 60)),
            (result.predictions[r["name"]][:, :2], (40, 40, 230)),
        ):
            for x, y in image_to_crop(points, box, tile):
                cv2.circle(image, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
        cv2.putText(
            image,
            f"yaw {r['yaw']:.0f}  NME {r['nme2d']:.1f}%",
            (4, 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        tiles.append(image)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    grid = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    return np.concatenate(grid, 0)
