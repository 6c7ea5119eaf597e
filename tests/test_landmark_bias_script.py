"""scripts/landmark_bias.py: the signed-error diagnostic quoted in experiments/reference_network/README.md."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from pgnface.data import SyntheticConfig, SyntheticFaces

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "pgnface" / "assets" / "pgn_reference.pt"


def _script():
    spec = importlib.util.spec_from_file_location("landmark_bias", ROOT / "scripts" / "landmark_bias.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_signed_error_is_zero_for_a_perfect_predictor_and_sees_a_shift():
    script = _script()
    face = SyntheticFaces(config=SyntheticConfig(size=120, framing="landmarks"), seed=3).sample(1, seed=0)
    image = (face["image"][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    truth = face["landmarks2d"][0].numpy()

    class Oracle:  # returns the annotation, moved by `shift` crop pixels
        input_size = 120
        shift = np.zeros(2)

        def __call__(self, crops):
            import torch

            box = script.landmark_crop_box(truth)
            points = (truth - box[:2]) * 120 / (box[2] - box[0]) + self.shift
            return torch.from_numpy(points).float()[None]

    oracle = Oracle()
    assert np.abs(script.signed_error(oracle, image, truth)).max() < 1e-4
    oracle.shift = np.array([0.0, 2.0])
    errors = script.signed_error(oracle, image, truth)
    assert np.allclose(errors, [0.0, 2.0], atol=1e-4)
    row = script.format_row("shifted", errors[None])
    assert "eyes +0.00,+2.00" in row and "n=   1" in row


@pytest.mark.skipif(not REFERENCE.is_file(), reason="no bundled reference network")
def test_script_runs_on_an_image_and_synthetic_faces(tmp_path, capsys):
    script = _script()
    face = SyntheticFaces(config=SyntheticConfig(size=160, framing="landmarks"), seed=5).sample(1, seed=0)
    path = tmp_path / "face.jpg"
    cv2.imwrite(str(path), (face["image"][0].permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8))
    np.save(tmp_path / "face_lm68.npy", face["landmarks2d"][0].numpy())
    assert script.main(["--checkpoint", str(REFERENCE), "--image", str(path), "--synthetic", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("face.jpg") and out[2].startswith("synthetic, |yaw| < 30")
    with pytest.raises(SystemExit):
        script.main(["--checkpoint", str(REFERENCE), "--image", str(tmp_path / "missing.jpg")])
