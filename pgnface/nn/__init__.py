"""The PGN network: backbones, landmark and coefficient heads, the full reconstructor, checkpoints.

    from pgnface.nn import PGNReconstructor, save_reconstructor, load_reconstructor
    net = PGNReconstructor(MorphableModel.builtin(), backbone="mobilenetv2", width=0.5)
    out = net(images)   # landmarks, coefficients, pose (solved from the landmarks), vertices
"""

from .backbones import BACKBONES, MobileNetV2, ResNet, build_backbone
from .checkpoint import (REFERENCE_CHECKPOINT, atomic_save, bundled_checkpoints, check_model_identity,
                         load_reconstructor, model_identity, read_checkpoint, reconstructor_payload,
                         save_reconstructor)
from .heads import LANDMARK_MODES, NUM_LANDMARKS, CoefficientHead, LandmarkHead, soft_argmax
from .reconstructor import POSE_MODES, NetworkConfig, PGNReconstructor, network_config
from .refine import refine_shape
from .rotation import rotation_from_6d, rotation_to_6d

__all__ = ["BACKBONES", "LANDMARK_MODES", "NUM_LANDMARKS", "POSE_MODES", "REFERENCE_CHECKPOINT", "CoefficientHead",
           "LandmarkHead", "MobileNetV2", "NetworkConfig", "PGNReconstructor", "ResNet", "atomic_save",
           "build_backbone", "bundled_checkpoints", "check_model_identity", "load_reconstructor", "model_identity",
           "network_config", "read_checkpoint", "reconstructor_payload", "refine_shape", "rotation_from_6d",
           "rotation_to_6d", "save_reconstructor", "soft_argmax"]
