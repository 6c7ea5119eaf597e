"""The PGN network: backbones, landmark and coefficient heads, the full network, checkpoints.

from pgnface.nn import PGNNetwork, save_network, load_network
net = PGNNetwork(MorphableModel.builtin(), backbone="mobilenetv2", width=0.5)
out = net(images)   # landmarks, coefficients, pose (solved from the landmarks), vertices
"""

from pgnface.nn.backbones import BACKBONES, MobileNetV2, ResNet, build_backbone
from pgnface.nn.checkpoint import (
    REFERENCE_CHECKPOINT,
    atomic_save,
    bundled_checkpoints,
    check_morphable_identity,
    load_network,
    morphable_identity,
    network_payload,
    read_checkpoint,
    save_network,
)
from pgnface.nn.heads import (
    LANDMARK_MODES,
    NUM_LANDMARKS,
    CoefficientHead,
    LandmarkHead,
    soft_argmax,
)
from pgnface.nn.network import (
    POSE_MODES,
    NetworkConfig,
    PGNNetwork,
    network_config,
)
from pgnface.nn.refine import refine_shape
from pgnface.nn.rotation import rotation_from_6d, rotation_to_6d

__all__ = [
    "BACKBONES",
    "LANDMARK_MODES",
    "NUM_LANDMARKS",
    "POSE_MODES",
    "REFERENCE_CHECKPOINT",
    "CoefficientHead",
    "LandmarkHead",
    "MobileNetV2",
    "NetworkConfig",
    "PGNNetwork",
    "ResNet",
    "atomic_save",
    "build_backbone",
    "bundled_checkpoints",
    "check_morphable_identity",
    "load_network",
    "morphable_identity",
    "network_config",
    "read_checkpoint",
    "network_payload",
    "refine_shape",
    "rotation_from_6d",
    "rotation_to_6d",
    "save_network",
    "soft_argmax",
]
