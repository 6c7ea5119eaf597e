"""What may happen to a run folder: a fresh run never replaces one, a resumed run keeps its meaning.

A run folder holds the work of a run (checkpoint.pt, model.pt, log.jsonl, and with
validation val.jsonl and best.pt). A
fresh run into such a folder is refused unless it is asked to overwrite. A
resumed run continues with the configuration saved in its checkpoint; a
change that only affects how long it runs or how it reports (``steps``,
``log_every``, ...) is applied, any other change is refused, since the
result would be neither the old run nor a new one.
"""

from typing import Any, Dict, List, Optional, Tuple

from pgnface.train.config import TrainConfig

RUN_FILES = ("checkpoint.pt", "model.pt", "log.jsonl", "val.jsonl", "best.pt")
# Fields a resumed run may change: they decide how long it runs, how it reports, where it
# computes and how its network is exported, not what it learns.
RESUMABLE_CHANGES = (
    "steps",
    "log_every",
    "checkpoint_every",
    "tensorboard",
    "threads",
    "device",
    "bn_calibration",
    "bn_calibration_batches",
)


def run_files(out_dir) -> List[str]:
    """The names of the files in `out_dir` (a Path) that hold a run's work."""
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def check_fresh_run(out_dir, overwrite: bool) -> None:
    """Refuses a fresh run into a folder that holds a run, unless asked to overwrite it.

    Args:
        out_dir: the run folder (a Path).
        overwrite: the caller means to replace the run.

    Raises:
        ValueError: `out_dir` holds a run and `overwrite` is False.
    """
    found = run_files(out_dir)
    if found and not overwrite:
        raise ValueError(
            f"{out_dir} already holds a run ({', '.join(found)}); continue it with --resume, "
            "choose another folder, or pass --overwrite to replace it"
        )


def clear_run(out_dir) -> None:
    """Deletes a run's files (RUN_FILES, in `out_dir`, a Path), so nothing of it mixes with the next."""
    for name in run_files(out_dir):
        (out_dir / name).unlink()


def _flatten(values: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def resumed_config(
    saved: TrainConfig, requested: Optional[TrainConfig], step: int
) -> Tuple[TrainConfig, Dict[str, List[Any]]]:
    """The configuration a resumed run continues with, and what changed from the saved one.

    Args:
        saved: the configuration in the run's checkpoint.
        requested: the configuration asked for now (None: the saved one, unchanged).
        step: the checkpoint's step.

    Returns:
        (config, changes): the saved config with the allowed changes applied, and
        {dotted key: [saved value, new value]} for each of them.

    Raises:
        ValueError: a change outside RESUMABLE_CHANGES (all of them are named),
            or ``steps`` below the checkpoint's step.
    """
    if requested is None:
        return saved, {}
    old, new = _flatten(saved.to_dict()), _flatten(requested.to_dict())
    changes = {key: [old[key], new[key]] for key in old if old[key] != new[key]}
    refused = [
        f"{key}={new} (the run has {old})" for key, (old, new) in changes.items() if key not in RESUMABLE_CHANGES
    ]
    if refused:
        raise ValueError(
            "--resume continues a run as it was configured; these settings would change it: "
            + ", ".join(refused)
            + f". Only {', '.join(RESUMABLE_CHANGES)} may change; start a new run in another folder for the rest"
        )
    if requested.steps < step:
        raise ValueError(f"steps={requested.steps} is below the step the run has reached ({step})")
    return TrainConfig.from_dict({**saved.to_dict(), **{key: new for key, (_, new) in changes.items()}}), changes
