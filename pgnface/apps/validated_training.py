"""Training with a validation split: the 300-W protocol every N steps, the best network kept.

``train_validated`` runs a ``pgnface.train.Trainer`` in legs of ``every`` steps. After each
leg it scores the network being trained on a 300-W-layout validation folder with the
300-W protocol (``pgnface.eval.face300w``), appends one line to ``val.jsonl`` in the run
folder (step, inter-ocular and box NME: mean, median, failure rates) and writes the network
to ``best.pt`` when its mean inter-ocular NME is the lowest so far. A resumed run reads
``val.jsonl`` back, so ``best.pt`` stays the best over the whole run.

Model selection belongs on a validation split (300-W ``helen_test``); AFLW2000-3D is a test
set and never a validation folder here.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from pgnface.eval.face300w import evaluate, load_300w
from pgnface.eval.predictors import NetworkPredictor
from pgnface.nn.checkpoint import network_payload
from pgnface.nn.safe_io import atomic_save
from pgnface.train import TrainConfig, Trainer


def validation_record(step: int, summary: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    """One val.jsonl line: the step and the protocol's summary, flattened (percent).

    Args:
        step: the training step the network was scored at.
        summary: ``Face300WResult.summary()``: {normaliser: {statistic: value}}.

    Returns:
        {"step": step, "<normaliser>_<statistic>": value, ...}, e.g. ``nme_io_mean``.
    """
    record: Dict[str, Any] = {"step": int(step)}
    for norm, row in summary.items():
        for key, value in row.items():
            record[f"{norm}_{key}"] = value
    return record


def read_validation_log(path) -> List[Dict[str, Any]]:
    """The records of a val.jsonl (empty if there is none).

    Args:
        path: the val.jsonl file.

    Returns:
        Its records, one dict per line (``validation_record``'s), in file order.
    """
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_validated(
    config: Optional[TrainConfig],
    out_dir,
    folder,
    subset: Optional[str] = None,
    every: int = 500,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Trains as ``pgnface.train.train`` does, validating every `every` steps (see the module docstring).

    Args:
        config, out_dir, resume, overwrite, progress: as for ``pgnface.train.train``.
        folder: a 300-W-layout folder (``load_300w``).
        subset: the subset of its ``landmarks.npz`` to validate on (e.g. ``helen_test``).
        every: steps between validations (> 0); the last step is always validated.

    Returns:
        The trainer's summary of the last leg, plus ``best`` (the best val.jsonl record or
        None) and ``validations`` (records written by this call).

    Raises:
        ValueError: `every` is not positive, or the folder holds no faces.
    """
    if every <= 0:
        raise ValueError(f"every must be a positive number of steps, got {every}")
    faces = load_300w(folder, subset)
    if not faces:
        raise ValueError(f"the validation folder {folder} holds no labelled faces")
    trainer = Trainer(config, out_dir, resume=resume, progress=progress, overwrite=overwrite)
    # A fresh run never meets an old val.jsonl or best.pt: the trainer refuses the folder or,
    # asked to overwrite, clears them with the rest of the run (pgnface.train.run_folder).
    log_path = Path(out_dir) / "val.jsonl"
    history = read_validation_log(log_path)
    best = min(history, key=lambda r: r["nme_io_mean"], default=None)
    written = []
    try:
        steps = trainer.config.steps
        # A finished run resumed without new steps runs no leg: the summary says nothing was done.
        summary: Dict[str, Any] = {
            "step": trainer.step,
            "rank": trainer.info.rank,
            "last": {},
            "history": [],
            "interrupted": None,
            "img_per_s": 0.0,
        }
        while trainer.step < steps:
            summary = trainer.run(min(steps, (trainer.step // every + 1) * every))
            if summary["interrupted"]:
                break
            net = trainer.export_network()
            record = _validate(trainer, net, faces)
            if trainer.info.is_main:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                written.append(record)
                if best is None or record["nme_io_mean"] < best["nme_io_mean"]:
                    best = record
                    payload = network_payload(net)
                    payload.update(input_size=trainer.config.data.size, step=trainer.step, validation=record)
                    payload.update(trainer.data_terms)
                    atomic_save(payload, Path(out_dir) / "best.pt")
        summary.update(best=best, validations=written)
        return summary
    finally:
        trainer.close()


def _validate(trainer: Trainer, net: torch.nn.Module, faces) -> Dict[str, Any]:
    """Scores a network of the trainer on `faces` with the 300-W protocol.

    Args:
        trainer: the Trainer (its step, input size and device).
        net: the network to score (``trainer.export_network()``), in eval mode.
        faces: ``load_300w``'s faces.

    Returns:
        The step's ``validation_record``.
    """
    predictor = NetworkPredictor(net, trainer.config.data.size)
    result = evaluate(predictor, faces, device=trainer.device)
    return validation_record(trainer.step, result.summary())
