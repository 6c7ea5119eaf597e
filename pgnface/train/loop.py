"""The training loop: data, forward, losses, AdamW with warm-up + cosine, AMP, logs, checkpoints, DDP.

    summary = train(TrainConfig(steps=2000), "runs/pgn")        # or `pgnface train ...`
    summary = train(None, "runs/pgn", resume=True)               # continues where it stopped

A run folder holds config.json, log.jsonl (one JSON record per logged step),
checkpoint.pt (everything needed to resume: weights, optimizer, schedule,
AMP scaler, step, RNG states; written atomically) and, at the end, model.pt
(the network alone, for pgnface.nn.load_network).

No work is lost: a fresh run refuses a folder that holds a run (unless asked
to overwrite it), a resumed run keeps its configuration (see
pgnface.train.run_folder), SIGINT / SIGTERM stop the run after the current
step with a checkpoint, and a non-finite loss stops it before the step that
would spoil the weights, keeping the last checkpoint.
"""

import json
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from pgnface.data.landmarks2d import RESEARCH_ONLY
from pgnface.morphable import MorphableModel
from pgnface.nn import (
    PGNNetwork,
    atomic_save,
    check_morphable_identity,
    network_payload,
    read_checkpoint,
)
from pgnface.nn.checkpoint import build_network, load_weights
from pgnface.nn.safe_io import remove_stale_temps
from pgnface.train.batch_norm_calibration import calibrate_batch_norm, calibration_batches
from pgnface.train.batches import TrainBatches
from pgnface.train.config import TrainConfig
from pgnface.train.distributed import DistInfo, init_distributed, shutdown_distributed
from pgnface.train.objective import compute_losses
from pgnface.train.run_folder import check_fresh_run, clear_run, resumed_config
from pgnface.train.stop_signals import StopSignals
from pgnface.train.weight_average import WeightAverage


class TrainingDiverged(ValueError):
    """The loss or the gradient became non-finite; the run stopped before updating the weights.

    A ValueError because it is the settings (learning rate, loss weights, data)
    that do not fit, as for any other rejected setting.
    """


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at `step`: linear warm-up, then cosine to min_lr_ratio (or constant)."""
    warm = min(config.warmup_steps, max(config.steps - 1, 0))
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "constant":
        return 1.0
    progress = (step - warm) / max(config.steps - warm, 1)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def run_data_terms(real: bool, inherited: Optional[str]) -> Optional[str]:
    """The terms of use a run's networks carry: those of its init network, then its own.

    Args:
        real: the run trains on research-only labelled faces (300-W, YouTube Faces).
        inherited: the init (or resumed) checkpoint's ``data_terms``, if any.

    Returns:
        The inherited terms and, for a run on real labels, RESEARCH_ONLY (each once), joined
        by "; "; None when there are none.
    """
    terms = [inherited] if inherited else []
    if real and RESEARCH_ONLY not in terms:
        terms.append(RESEARCH_ONLY)
    return "; ".join(terms) or None


def _device(config: TrainConfig, info: DistInfo) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    return device


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_morphable(path: str) -> MorphableModel:
    """The 3DMM of data.morphable ("" = built-in)."""
    return MorphableModel.load(path) if path else MorphableModel.builtin()


def load_run_config(out_dir) -> TrainConfig:
    """The configuration saved in a run folder's checkpoint (what a resume's overrides apply to).

    Args:
        out_dir: the run folder.

    Returns:
        Its TrainConfig.

    Raises:
        FileNotFoundError: no checkpoint.pt there. ValueError: it cannot be read.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return TrainConfig.from_stored(read_checkpoint(path)["train_config"])


def _any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when `flag` is true on any process (every process gets the same answer)."""
    if not info.enabled:
        return flag
    value = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


class Trainer:
    """One training run (see the module docstring). Use :func:`train` unless you need the pieces.

    Args:
        config: TrainConfig (validated here). With `resume`: None continues with the
            checkpoint's config; a config is compared with it, and only the changes
            of pgnface.train.run_folder.RESUMABLE_CHANGES (such as `steps`) are
            allowed; they are applied and recorded in log.jsonl. Build it with
            ``apply_overrides(load_run_config(out_dir), overrides)`` to change a few keys.
        out_dir: the run folder.
        resume: continue from out_dir/checkpoint.pt.
        overwrite: a fresh run replaces the run already in out_dir instead of refusing.
        progress: show a tqdm progress bar (main process only).

    Raises:
        ValueError: a bad config, a fresh run into a folder holding a run (without
            `overwrite`), a resume that would change the run's meaning, or a checkpoint
            that cannot be used. FileNotFoundError: `resume` without a checkpoint.
    """

    def __init__(
        self,
        config: Optional[TrainConfig],
        out_dir,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
    ):
        self.out = Path(out_dir)
        self.checkpoint_path = self.out / "checkpoint.pt"
        payload, self.resume_changes = None, {}
        if resume:
            if not self.checkpoint_path.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
            payload = read_checkpoint(self.checkpoint_path)
            saved = TrainConfig.from_stored(payload["train_config"])
            config, self.resume_changes = resumed_config(saved, config, int(payload["step"]))
        elif config is None:
            raise ValueError("a fresh run needs a config (None only continues a run with resume=True)")
        else:
            check_fresh_run(self.out, overwrite)
        init = None
        if payload is None and config.init:
            # Fine-tuning: the init checkpoint fixes the architecture.
            init = read_checkpoint(config.init)
            config = TrainConfig.from_dict({**config.to_dict(), "net": init["network"]})
        config.validate()
        self.config, self.progress = config, progress
        if config.threads:
            torch.set_num_threads(config.threads)
        self.info = init_distributed(
            "cuda"
            if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
            else "cpu"
        )
        self.device = _device(config, self.info)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed)
        morphable = load_morphable(config.data.morphable)
        if payload is not None:
            check_morphable_identity(payload["model"], morphable, source=f"checkpoint {self.checkpoint_path}")
        if init is not None:
            check_morphable_identity(init["model"], morphable, source=f"init checkpoint {config.init}")
            self.net = build_network(init, morphable, f"init checkpoint {config.init}").to(self.device)
        else:
            self.net = PGNNetwork(morphable, **asdict(config.net)).to(self.device)
        # Terms of use of the training data travel with the weights, through fine-tuning too.
        real = (config.data.real300w and config.data.real300w_weight > 0) or (
            config.data.ytf and config.data.ytf_weight > 0
        )
        terms = run_data_terms(real, (payload or init or {}).get("data_terms"))
        self.data_terms = {"data_terms": terms} if terms else {}
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.morphable = self.net.morphable_on(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.config))
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp and self.amp_dtype == torch.float16)
        self.step = 0
        if payload is not None:
            load_weights(self.net, payload["state_dict"], f"checkpoint {self.checkpoint_path}")
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.scaler.load_state_dict(payload["scaler"])
            self.step = int(payload["step"])
            _set_rng_state(payload["rng"])
        self.calibration = calibration_batches(config, self.morphable) if config.bn_calibration else None
        self._calibrated: Optional[Tuple[int, torch.nn.Module]] = None  # (step, copy): one per step
        self.average = WeightAverage(self.net, config.ema_decay) if config.ema_decay > 0 else None
        if self.average is not None and payload is not None and "weight_average" in payload:
            self.average.load_state_dict(payload["weight_average"])
        self.batches = TrainBatches(
            self.morphable,
            config.data,
            config.seed,
            self.info.rank,
            self.info.world_size,
            equivariant=config.loss.equivariance > 0,
            flow=config.loss.flow > 0,
        )
        self.ddp = self.net
        if self.info.enabled:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.info.is_main:
            if payload is None:
                clear_run(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            for name in ("checkpoint.pt", "model.pt"):
                remove_stale_temps(self.out / name)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self.tensorboard = self._open_tensorboard()
        if self.info.is_main and self.resume_changes:
            self._log({"step": self.step, "event": "resume", "changed": self.resume_changes})

    # --- one step ---------------------------------------------------------------------

    def train_step(self, batch: Dict) -> Dict[str, float]:
        """Forward, losses, backward and optimizer step on one batch; returns the logged numbers."""
        cfg = self.config
        self.ddp.train()
        images, n = batch["image"], batch["image"].shape[0]
        warped = batch.get("warped_image")
        if warped is not None:  # one forward for both views (DDP wants one forward per backward)
            images = torch.cat([images, warped])
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=cfg.amp):
            out = self.ddp(images)
        warped_landmarks = None
        if warped is not None:
            warped_landmarks = out["landmarks"][n:]
            out = {k: v[:n] for k, v in out.items()}
        total, terms = compute_losses(out, batch, self.morphable, cfg.loss, warped_landmarks)
        if _any_rank(not bool(torch.isfinite(total)), self.info, self.device):
            self._diverged("loss", total, terms)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.net.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        # With the float16 GradScaler an overflow only skips the step (and lowers the scale);
        # without it, the step would write the non-finite gradient into the weights.
        if not self.scaler.is_enabled() and not bool(torch.isfinite(grad_norm)):
            self._diverged("gradient norm", grad_norm, terms)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.average is not None:
            self.average.update(self.net)
        record = {"loss": float(total.detach()), "grad_norm": float(grad_norm)}
        record.update({k: float(v) for k, v in terms.items()})
        return record

    def _diverged(self, what: str, value: torch.Tensor, terms: Dict[str, torch.Tensor]) -> None:
        """Raises TrainingDiverged naming the step, the non-finite terms and the checkpoint kept."""
        bad = [f"{k}={float(v):.4g}" for k, v in terms.items() if not math.isfinite(float(v))]
        kept = (
            f"{self.checkpoint_path} (step {int(read_checkpoint(self.checkpoint_path)['step'])}) is the last good state"
            if self.checkpoint_path.is_file()
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"the {what} became {float(value.detach())} at step {self.step + 1}"
            + (f" ({', '.join(bad)})" if bad else "")
            + f"; training stopped before updating the weights and {kept}. "
            f"Lower lr (now {self.config.lr:g}) or the loss weights, or check the data"
        )

    # --- checkpoints --------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Writes out/checkpoint.pt atomically (main process only)."""
        if not self.info.is_main:
            return
        payload = network_payload(self.net)
        payload.update(
            input_size=self.config.data.size,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            step=self.step,
            rng=_rng_state(),
            train_config=self.config.to_dict(),
            **self.data_terms,
        )
        if self.average is not None:
            payload["weight_average"] = self.average.state_dict()
        atomic_save(payload, self.checkpoint_path)

    def export_network(self) -> torch.nn.Module:
        """The network the run writes and validates.

        The weight average when the config keeps one (``ema_decay``), else the trained network;
        with ``bn_calibration``, a copy of it whose batch-norm statistics are recomputed on that
        kind of batch (pgnface.train.batch_norm_calibration), made once per step: model.pt
        and the last validation share it.
        """
        net = self.net.module if hasattr(self.net, "module") else self.net
        net = self.average.module if self.average is not None else net
        if self.calibration is None:
            return net
        if self._calibrated is None or self._calibrated[0] != self.step:
            cfg = self.config
            copy = calibrate_batch_norm(net, self.calibration, cfg.bn_calibration_batches, cfg.batch_size, self.device)
            self._calibrated = (self.step, copy)
        return self._calibrated[1]

    def _log(self, record: Dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])
            self.tensorboard.flush()

    def _open_tensorboard(self):
        if not (self.config.tensorboard and self.info.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional dependency)
        except ImportError:
            raise ImportError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    # --- the loop -----------------------------------------------------------------------

    def run(self, until: Optional[int] = None) -> Dict[str, Any]:
        """Trains from the current step to config.steps (or to step `until`, checkpointing there,
        as if interrupted); returns a summary (step, last record, loss history, timing).

        SIGINT or SIGTERM stop it after the current step with a checkpoint; the summary's
        "interrupted" then names the signal (else None).

        Raises:
            TrainingDiverged: the loss or gradient became non-finite (the last checkpoint is kept).
        """
        cfg = self.config
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.info.is_main),
        )
        stop = cfg.steps if until is None else min(until, cfg.steps)
        summary = {"step": self.step, "rank": self.info.rank, "last": {}, "history": [], "images": 0}
        start = time.perf_counter()
        with StopSignals() as signals:
            try:
                self._loop(stop, signals, bar, summary)
            finally:
                bar.close()
        summary["interrupted"] = signals.requested
        if signals.requested and self.info.is_main:
            print(
                f"pgnface train: stopped by {signals.requested} at step {self.step}; "
                f"checkpoint written to {self.checkpoint_path}; continue with: pgnface train --out {self.out} --resume",
                file=sys.stderr,
            )
        if self.info.is_main and summary["history"] and self.step == cfg.steps:
            payload = network_payload(self.export_network())
            payload["input_size"] = cfg.data.size  # the crop size the network was trained at
            payload.update(self.data_terms)
            atomic_save(payload, self.out / "model.pt")
        elapsed = time.perf_counter() - start
        summary.update(step=self.step, seconds=elapsed, img_per_s=summary.pop("images") / max(elapsed, 1e-9))
        return summary

    def _loop(self, stop: int, signals: StopSignals, bar, summary: Dict[str, Any]) -> None:
        """Steps until `stop` or a stop signal; logs, checkpoints and fills `summary` on the way."""
        cfg = self.config
        start = window_start = time.perf_counter()
        window_images = 0
        while self.step < stop:
            batch = self.batches.batch(self.step, cfg.batch_size)
            record = self.train_step(batch)
            self.step += 1
            n = batch["image"].shape[0] * self.info.world_size
            summary["images"] += n
            window_images += n
            summary["history"].append(record["loss"])
            summary["last"] = record
            now = time.perf_counter()
            rate = window_images / max(now - window_start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{rate:.1f}")
            if self.info.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                self._log(
                    {
                        "step": self.step,
                        "kind": self.batches.kind(self.step - 1),
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "img_per_s": round(rate, 2),
                        "time_s": round(now - start, 3),
                        **record,
                    }
                )
                window_start, window_images = now, 0
            interrupted = _any_rank(signals.requested is not None, self.info, self.device)
            if self.step % cfg.checkpoint_every == 0 or self.step == stop or interrupted:
                self.save_checkpoint()
            if interrupted:
                signals.requested = signals.requested or "a stop signal on another process"
                return

    def close(self) -> None:
        if getattr(self, "tensorboard", None) is not None:
            self.tensorboard.close()
        shutdown_distributed(self.info)


def train(
    config: Optional[TrainConfig],
    out_dir,
    resume: bool = False,
    progress: bool = True,
    trainer_hook: Optional[Any] = None,
    until: Optional[int] = None,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Runs (or resumes) a training run in `out_dir`; returns the summary of Trainer.run.

    Args:
        config, resume, overwrite, progress: see :class:`Trainer`.
        until: stop (with a checkpoint) at this step, as an interrupted run would.
        trainer_hook: optional callable given the finished Trainer before the
            process group closes (tests use it to inspect the parameters).
    """
    trainer = Trainer(config, out_dir, resume=resume, progress=progress, overwrite=overwrite)
    try:
        summary = trainer.run(until)
        if trainer_hook is not None:
            trainer_hook(trainer)
        return summary
    finally:
        trainer.close()
