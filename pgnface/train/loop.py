"""The training loop: data, forward, losses, AdamW with warm-up + cosine, AMP, logs, checkpoints, DDP.

    summary = train(TrainConfig(steps=2000), "runs/pgn")        # or `pgnface train ...`
    summary = train(config, "runs/pgn", resume=True)             # continues where it stopped

A run folder holds config.json, log.jsonl (one JSON record per logged step),
checkpoint.pt (everything needed to resume: weights, optimizer, schedule,
AMP scaler, step, RNG states; written atomically) and, at the end, model.pt
(the network alone, for pgnface.nn.load_network).
"""

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from pgnface.morphable import MorphableModel
from pgnface.nn import (
    PGNNetwork,
    atomic_save,
    check_morphable_identity,
    network_payload,
    read_checkpoint,
)
from pgnface.train.batches import TrainBatches
from pgnface.train.config import TrainConfig
from pgnface.train.distributed import DistInfo, init_distributed, shutdown_distributed
from pgnface.train.objective import compute_losses


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at `step`: linear warm-up, then cosine to min_lr_ratio (or constant)."""
    warm = min(config.warmup_steps, max(config.steps - 1, 0))
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "constant":
        return 1.0
    progress = (step - warm) / max(config.steps - warm, 1)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


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


class Trainer:
    """One training run (see the module docstring). Use :func:`train` unless you need the pieces.

    Args:
        config: TrainConfig (validated here).
        out_dir: the run folder.
        resume: continue from out_dir/checkpoint.pt (its config wins, except `steps`,
            `log_every` and `checkpoint_every`, which may be raised to extend a run).
        progress: show a tqdm progress bar (main process only).
    """

    def __init__(self, config: TrainConfig, out_dir, resume: bool = False, progress: bool = True):
        self.out = Path(out_dir)
        self.checkpoint_path = self.out / "checkpoint.pt"
        payload = None
        if resume:
            if not self.checkpoint_path.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
            payload = read_checkpoint(self.checkpoint_path)
            saved = TrainConfig.from_stored(payload["train_config"])
            config = TrainConfig.from_dict(
                {
                    **saved.to_dict(),
                    "steps": config.steps,
                    "log_every": config.log_every,
                    "checkpoint_every": config.checkpoint_every,
                }
            )
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
        self.net = PGNNetwork(morphable, **asdict(config.net)).to(self.device)
        if init is not None:
            self.net.load_state_dict(init["state_dict"])
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.morphable = self.net.morphable_on(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.config))
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp and self.amp_dtype == torch.float16)
        self.step = 0
        if payload is not None:
            self.net.load_state_dict(payload["state_dict"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.scaler.load_state_dict(payload["scaler"])
            self.step = int(payload["step"])
            _set_rng_state(payload["rng"])
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
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
            if payload is None and (self.out / "log.jsonl").exists():
                (self.out / "log.jsonl").unlink()  # a fresh run starts a fresh log
        self.tensorboard = self._open_tensorboard()

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
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.net.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        record = {"loss": float(total.detach()), "grad_norm": float(grad_norm)}
        record.update({k: float(v) for k, v in terms.items()})
        return record

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
        )
        atomic_save(payload, self.checkpoint_path)

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
        as if interrupted); returns a summary (step, last record, loss history, timing)."""

        cfg = self.config
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.info.is_main),
        )
        record: Dict[str, Any] = {}
        history = []
        start, images_seen = time.perf_counter(), 0
        window_start, window_images = start, 0
        stop = cfg.steps if until is None else min(until, cfg.steps)
        try:
            while self.step < stop:
                batch = self.batches.batch(self.step, cfg.batch_size)
                record = self.train_step(batch)
                self.step += 1
                n = batch["image"].shape[0] * self.info.world_size
                images_seen += n
                window_images += n
                history.append(record["loss"])
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
                if self.step % cfg.checkpoint_every == 0 or self.step == stop:
                    self.save_checkpoint()
        finally:
            bar.close()
        if self.info.is_main and history and self.step == cfg.steps:
            payload = network_payload(self.net)
            payload["input_size"] = cfg.data.size  # the crop size the network was trained at
            atomic_save(payload, self.out / "model.pt")
        elapsed = time.perf_counter() - start
        return {
            "step": self.step,
            "rank": self.info.rank,
            "last": record,
            "history": history,
            "seconds": elapsed,
            "img_per_s": images_seen / max(elapsed, 1e-9),
        }

    def close(self) -> None:
        if getattr(self, "tensorboard", None) is not None:
            self.tensorboard.close()
        shutdown_distributed(self.info)


def train(
    config: TrainConfig,
    out_dir,
    resume: bool = False,
    progress: bool = True,
    trainer_hook: Optional[Any] = None,
    until: Optional[int] = None,
) -> Dict[str, Any]:
    """Runs (or resumes) a training run in `out_dir`; returns the summary of Trainer.run.

    Args:
        until: stop (with a checkpoint) at this step, as an interrupted run would.
        trainer_hook: optional callable given the finished Trainer before the
            process group closes (tests use it to inspect the parameters).
    """
    trainer = Trainer(config, out_dir, resume=resume, progress=progress)
    try:
        summary = trainer.run(until)
        if trainer_hook is not None:
            trainer_hook(trainer)
        return summary
    finally:
        trainer.close()
