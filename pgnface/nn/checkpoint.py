"""Saving and loading reconstructors together with the identity of their 3DMM.

A network's coefficient head only means something for the model it was
trained with, so a checkpoint records that model's identity (name, sizes,
landmark ids and a checksum of the mean shape); loading it with another
model raises a ValueError that says what differs.
"""

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from pgnface.morphable import MorphableModel
from pgnface.nn.network import PGNNetwork, network_config
from pgnface.nn.safe_io import atomic_save, safe_torch_load

FORMAT = "pgnface.reconstructor"
VERSION = 1
ASSETS = Path(__file__).resolve().parents[1] / "assets"
REFERENCE_CHECKPOINT = ASSETS / "pgn_reference.pt"  # the bundled reference network (pgnface demo's default)


def bundled_checkpoints(prefix: str = "") -> List[Path]:
    """The networks shipped in pgnface/assets whose file name starts with `prefix`, sorted by name."""
    return sorted(ASSETS.glob(f"{prefix}*.pt")) if ASSETS.is_dir() else []


def morphable_identity(morphable: MorphableModel) -> Dict[str, Any]:
    """What identifies a 3DMM for a checkpoint: name, sizes, landmark ids, checksum of the mean."""
    mean = morphable.mean.detach().to("cpu", torch.float32).contiguous()
    return {
        "name": morphable.name,
        "num_vertices": morphable.num_vertices,
        "num_id": morphable.num_id,
        "num_exp": morphable.num_exp,
        "num_albedo": morphable.num_albedo,
        "landmark_ids": [int(i) for i in morphable.landmark_ids.tolist()],
        "mean_sha256": hashlib.sha256(mean.numpy().tobytes()).hexdigest(),
    }


def check_morphable_identity(saved: Dict[str, Any], morphable: MorphableModel, source: str = "the checkpoint") -> None:
    """Raises ValueError naming every field where `model` differs from the `saved` identity."""
    current = morphable_identity(morphable)
    diffs = []
    for key, want in saved.items():
        have = current.get(key)
        if key == "name" or have == want:
            continue
        if key == "landmark_ids":
            want, have = f"{len(want)} landmarks", f"{len(have)} landmarks (or other ids)"
        elif key == "mean_sha256":
            want, have = "another mean shape", "this one"
        diffs.append(f"{key}: {want} vs {have}")
    if diffs:
        raise ValueError(
            f"{source} was trained with the 3DMM {saved.get('name')!r}, which does not match "
            f"{morphable.name!r}: " + "; ".join(diffs) + ". Load it with the model it was trained with."
        )


def network_payload(net: torch.nn.Module) -> Dict[str, Any]:
    """The parts of a checkpoint that describe the network: format, config, 3DMM identity, weights."""
    net = getattr(net, "module", net)  # unwrap DistributedDataParallel
    if not isinstance(net, PGNNetwork):
        raise TypeError(f"net must be a PGNNetwork, got {type(net).__name__}")
    return {
        "format": FORMAT,
        "version": VERSION,
        "network": network_config(net),
        "model": morphable_identity(net.morphable),
        "state_dict": net.state_dict(),
    }


def save_network(path, net: torch.nn.Module, extra: Optional[Dict[str, Any]] = None) -> None:
    """Writes `net` (config, 3DMM identity, weights) and `extra` entries atomically to `path`."""
    payload = network_payload(net)
    payload.update(extra or {})
    atomic_save(payload, path)


def read_checkpoint(path) -> Dict[str, Any]:
    """Reads a checkpoint file; ValueError when it is not a pgnface reconstructor checkpoint.

    Only tensors and plain data are unpickled (see pgnface.nn.safe_io), so a
    crafted file cannot run code, whatever it turns out to be.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = safe_torch_load(path)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} could not be read: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pgnface reconstructor checkpoint")
    if payload.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer pgnface (checkpoint version {payload['version']})")
    for key in ("network", "model", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ValueError(f"checkpoint {path} is incomplete: its {key!r} entry is missing or not a dict")
    return payload


def build_network(payload: Dict[str, Any], morphable: MorphableModel, source: str) -> PGNNetwork:
    """The network a checkpoint's payload describes, with its weights.

    Args:
        payload: a read_checkpoint result.
        morphable: the 3DMM to build the network on.
        source: what the payload came from, for the messages.

    Returns:
        The network (train mode, on the CPU).

    Raises:
        ValueError: the settings or the weights do not fit a PGNNetwork.
    """
    try:
        net = PGNNetwork(morphable, **payload["network"])
    except TypeError as err:
        raise ValueError(f"{source}: its network settings do not describe a PGNNetwork ({err})") from None
    load_weights(net, payload["state_dict"], source)
    return net


def load_weights(net: torch.nn.Module, state_dict: Dict[str, Any], source: str) -> None:
    """net.load_state_dict, with a ValueError that lists the missing, unexpected and mis-shaped weights.

    Args:
        net: the module to load into.
        state_dict: the weights.
        source: what the weights came from, for the message.

    Raises:
        ValueError: weights missing, unexpected or of the wrong shape (up to 3 of each named).
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [
        f"{k} {tuple(v.shape)} (the network has {tuple(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", mis_shaped)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} weight(s) {what}: {', '.join(keys[:3])}{more}")
    if problems:
        raise ValueError(f"{source} does not fit its network: " + "; ".join(problems))
    net.load_state_dict(state_dict)


def load_network(
    path, morphable: Optional[MorphableModel] = None, map_location="cpu"
) -> Tuple[PGNNetwork, Dict[str, Any]]:
    """Builds the network a checkpoint describes and loads its weights.

    Args:
        path: the checkpoint file.
        model: the 3DMM to use; the built-in model if None. Must be the model
            the checkpoint was trained with.
        map_location: device for the network.

    Returns:
        (network in eval mode, the checkpoint's payload dict).

    Raises:
        FileNotFoundError: no such file. ValueError: not a checkpoint, a
            different 3DMM than the one it was trained with, or weights that
            do not fit the network it describes.
    """
    payload = read_checkpoint(path)
    morphable = morphable if morphable is not None else MorphableModel.builtin()
    check_morphable_identity(payload["model"], morphable, source=f"checkpoint {path}")
    net = build_network(payload, morphable, f"checkpoint {path}")
    return net.to(map_location).eval(), payload


def network_name(path, taken: Sequence[str] = ()) -> str:
    """A short label for a checkpoint: its folder for generic file names (model.pt), else its stem.

    A name already in `taken` gets a numeric suffix (-2, -3, ...).
    """
    path = Path(path)
    base = path.parent.name if path.stem in ("model", "checkpoint") and path.parent.name else path.stem
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name
