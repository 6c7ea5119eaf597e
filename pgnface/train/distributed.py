"""torch.distributed set-up for DDP runs launched by torchrun (or any launcher that sets the env vars)."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """This process's place in the run: rank, local rank, world size, and whether DDP is on."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True when the run has more than one process (DDP is on)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Joins the process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU); no-op otherwise.

    Args:
        device_type: "cuda" or "cpu".

    Returns:
        This process's DistInfo (from RANK, LOCAL_RANK and WORLD_SIZE).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def shutdown_distributed(info: DistInfo) -> None:
    """Leaves the process group, if this process joined one.

    Args:
        info: what init_distributed returned.
    """
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
