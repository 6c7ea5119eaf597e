"""Comparison tables of several networks on one protocol: text, markdown, CSV and JSON."""

import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

from pgnface.eval.aflw2000 import EvalResult

ROW_KEYS = {"[0,30]": "0_30", "(30,60]": "30_60", "(60,90]": "60_90", "balanced": "balanced", "mean": "mean"}
# (column, header) of the printed / markdown table; every column is "<metric>_<row key>".
SHOWN = (
    ("nme2d_0_30", "2D [0,30]"),
    ("nme2d_30_60", "2D (30,60]"),
    ("nme2d_60_90", "2D (60,90]"),
    ("nme2d_balanced", "2D bal."),
    ("nme3d_balanced", "3D bal."),
    ("recon_nme2d_balanced", "recon 2D bal."),
    ("yaw_error_mean", "yaw"),
    ("pitch_error_mean", "pitch"),
    ("roll_error_mean", "roll"),
    ("pose_error_mean", "pose"),
    ("rotation_error_mean", "rot."),
    ("vertex_nme_mean", "vertex NME"),
    ("shape_error_mean", "shape"),
)
LEGEND = (
    "2D / 3D: landmark-head NME % by |yaw| bin and balanced over the bins (AFLW2000-3D protocol); "
    "recon 2D: the same for the reconstruction's 68 landmark vertices after its pose; "
    "yaw / pitch / roll / pose: mean absolute angle error in degrees (pose: the mean of the three); "
    "rot.: mean geodesic rotation error in degrees (no gimbal artefact near |yaw| = 90); "
    "vertex NME: posed dense error % (same normaliser); shape: mean vertex distance after similarity "
    "alignment, model units."
)


def summary_row(result: EvalResult, metrics: Sequence[str], **info) -> Dict[str, object]:
    """One flat row of a comparison table.

    Args:
        result: a network's EvalResult.
        metrics: the per-image values to average.
        **info: leading columns (name, checkpoint, pose_mode, ...).

    Returns:
        `info`, "images", then "<metric>_<bin>" for every metric and table row.
    """
    row = {**info, "images": len(result.per_image)}
    for label, values in result.table(metrics).items():
        for metric in metrics:
            row[f"{metric}_{ROW_KEYS[label]}"] = values[metric]
    return row


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def format_comparison(rows: List[Dict[str, object]]) -> str:
    """Fixed-width text table: one line per network, the SHOWN columns.

    Args:
        rows: summary_row results.

    Returns:
        The table.
    """
    header = ["network", "pose mode"] + [h for _, h in SHOWN]
    body = [[str(r["name"]), str(r["pose_mode"])] + [_fmt(r[c]) for c, _ in SHOWN] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in [header] + body
    ]
    return "\n".join(lines)


def markdown_comparison(rows: List[Dict[str, object]]) -> str:
    """The comparison table in GitHub markdown, with the legend below.

    Args:
        rows: summary_row results.

    Returns:
        The markdown text.
    """
    header = ["network", "pose mode"] + [h for _, h in SHOWN]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(SHOWN)]
    lines += [
        "| " + " | ".join([str(r["name"]), str(r["pose_mode"])] + [_fmt(r[c]) for c, _ in SHOWN]) + " |" for r in rows
    ]
    return "\n".join(lines) + "\n\n" + LEGEND + "\n"


def _no_nan(value):
    """NaN (an empty yaw bin) -> None, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def write_comparison(out_dir, stem: str, rows: List[Dict[str, object]], details: Dict[str, object]) -> List[Path]:
    """Writes OUT/STEM.csv (every column), OUT/STEM.md and OUT/STEM.json (`details` plus the rows).

    Args:
        out_dir: the output folder (created if missing).
        stem: the files' stem.
        rows: summary_row results (at least one).
        details: extra JSON content (NaN becomes null).

    Returns:
        The three paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.json"]
    with open(paths[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    paths[1].write_text(markdown_comparison(rows))
    paths[2].write_text(json.dumps(_no_nan({**details, "summary": rows}), indent=1))
    return paths
