"""An exponential moving average of a network's weights, the network a run exports.

The average smooths the step-to-step noise of the trained weights (the validation score of the
raw weights jumps by several tenths of a percent between checks late in a fine-tuning run), so
the network a run writes (model.pt, best.pt) and validates is the average when the run asks for
one (``TrainConfig.ema_decay``). Floating-point weights and buffers (batch-norm statistics
included) are averaged; integer buffers (batch-norm step counters) are copied.
"""

import copy
from typing import Any, Dict

import torch


class WeightAverage:
    """An averaged copy of a network, updated after every optimizer step.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so the first updates
    are not dominated by the starting weights.

    Args:
        net: the network being trained (left untouched; the average is a deep copy).
        decay: weight of the old average per update, in (0, 1).

    Raises:
        ValueError: decay outside (0, 1).
    """

    def __init__(self, net: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(net).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        """Moves the average towards `net`'s current weights (same architecture as the copy)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        mine, theirs = self.module.state_dict(), net.state_dict()
        floats = [name for name, value in mine.items() if value.is_floating_point()]
        torch._foreach_lerp_([mine[n] for n in floats], [theirs[n].detach() for n in floats], 1.0 - decay)
        for name, value in mine.items():
            if not value.is_floating_point():
                value.copy_(theirs[name])

    def state_dict(self) -> Dict[str, Any]:
        """The average's weights and its update count (for checkpoints)."""
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores what state_dict returned."""
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
