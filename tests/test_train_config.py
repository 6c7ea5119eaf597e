"""The training config: nested synthetic settings, derived keys, refused old keys, stored configs."""

import json

import pytest
import torch

from pgnface.data import SyntheticConfig
from pgnface.train import TrainConfig, apply_overrides, train


def test_synthetic_settings_are_one_nested_section():
    cfg = apply_overrides(
        TrainConfig(),
        [
            "data.size=64",
            "data.synthetic.light_contrast=8",
            "data.synthetic.framing=landmarks",
            "net.face_fraction=0.7",
        ],
    )
    assert isinstance(cfg.data.synthetic, SyntheticConfig)
    assert (cfg.data.synthetic.light_contrast, cfg.data.synthetic.framing) == (8.0, "landmarks")
    # The crop size and the nominal face fraction have one value each.
    assert cfg.data.synthetic.size == 64 and cfg.data.synthetic.face_fraction == 0.7
    assert TrainConfig().data.synthetic.size == TrainConfig().data.size
    # Every generator setting is reachable, tuples as comma-separated numbers.
    cfg = apply_overrides(cfg, ["data.synthetic.pitch_std=5", "data.synthetic.ambient=0.2,0.6"])
    assert cfg.data.synthetic.pitch_std == 5.0 and cfg.data.synthetic.ambient == (0.2, 0.6)
    with pytest.raises(ValueError, match="data.synthetic.ambient must be 2 comma-separated numbers"):
        apply_overrides(cfg, ["data.synthetic.ambient=0.2"])


def test_the_saved_dict_round_trips_without_derived_keys(tmp_path):
    cfg = apply_overrides(
        TrainConfig(), ["data.size=96", "data.synthetic.ambient=0.2,0.6", "data.synthetic.yaw_max=30"]
    )
    values = cfg.to_dict()
    assert "size" not in values["data"]["synthetic"] and "face_fraction" not in values["data"]["synthetic"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    assert TrainConfig.from_json(path) == cfg
    assert TrainConfig.from_stored(values) == cfg


def test_each_setting_is_validated_once_under_its_key():
    for override, match in [
        ("data.synthetic.photo_prob=2", "data.synthetic.photo_prob must be in"),
        ("data.synthetic.yaw_max=-1", "data.synthetic.yaw_max must be >= 0"),
        ("data.synthetic.ambient=0.9,0.1", "data.synthetic.ambient must be a range"),
        ("data.size=16", "data.size must be at least 32"),
    ]:
        with pytest.raises(ValueError, match=match):
            apply_overrides(TrainConfig(), [override]).validate()
    with pytest.raises(ValueError, match="SyntheticConfig.photo_prob"):
        SyntheticConfig(photo_prob=-0.5).validate()


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("data.framing", "landmarks", "'data.framing' has moved: it is 'data.synthetic.framing' now"),
        ("data.background_prob", "0.5", "'data.background_prob' has moved: it is 'data.synthetic.photo_prob' now"),
        ("data.model", "bfm.mat", "'data.model' has moved: it is 'data.morphable' now"),
        ("data.hide_tilted_faces", "false", "'data.hide_tilted_faces' no longer exists"),
        ("data.head_prob", "0.7", "'data.head_prob' no longer exists"),
        ("data.hair_prob", "0.7", "'data.hair_prob' no longer exists"),
        ("data.neck_prob", "0.7", "'data.neck_prob' no longer exists"),
        ("data.synthetic.size", "64", "'data.synthetic.size' cannot be set: it follows 'data.size'"),
        ("data.synthetic.face_fraction", "0.7", "it follows 'net.face_fraction'"),
        ("data.synthetic.colour", "1", "unknown config key 'data.synthetic.colour'"),
    ],
)
def test_old_unknown_and_derived_keys_are_refused_with_one_line_naming_them(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match) as err:
        apply_overrides(TrainConfig(), [f"{key}={value}"])
    assert "\n" not in str(err.value)
    section, *rest = key.split(".")
    nested = {rest[-1]: json.loads(value) if value[0].isdigit() or value == "false" else value}
    for part in reversed(rest[:-1]):
        nested = {part: nested}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({section: nested}))
    with pytest.raises(ValueError, match=match) as err:
        TrainConfig.from_json(path)
    assert "\n" not in str(err.value)


def test_framing_model_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match="data.synthetic.framing 'model' is now called 'face_width'"):
        apply_overrides(TrainConfig(), ["data.synthetic.framing=model"]).validate()


def _old_layout(cfg: TrainConfig, **data) -> dict:
    """`cfg` as a checkpoint of the flat layout stores it (synthetic settings under data)."""
    values = cfg.to_dict()
    synthetic = values["data"].pop("synthetic")
    values["data"].update(
        model=values["data"].pop("morphable"),
        yaw_max=synthetic["yaw_max"],
        background_prob=synthetic["photo_prob"],
        albedo_std=synthetic["albedo_std"],
        light_contrast=synthetic["light_contrast"],
        framing="model" if synthetic["framing"] == "face_width" else synthetic["framing"],
        **{"hide_tilted_faces": True, "head_prob": 0.0, "hair_prob": 0.0, "neck_prob": 0.0, **data},
    )
    return values


def test_stored_configs_of_the_flat_layout_are_read():
    cfg = apply_overrides(TrainConfig(), ["data.synthetic.light_contrast=8", "data.synthetic.yaw_max=60"])
    assert TrainConfig.from_stored(_old_layout(cfg)) == cfg
    framed = apply_overrides(cfg, ["data.synthetic.framing=landmarks"])
    assert TrainConfig.from_stored(_old_layout(framed)) == framed
    # A removed option that changed the data cannot be continued as configured.
    for key, value in (("hair_prob", 0.7), ("hide_tilted_faces", False)):
        with pytest.raises(ValueError, match=f"this run used data.{key}, which no longer exists.*--init"):
            TrainConfig.from_stored(_old_layout(cfg, **{key: value}))


def test_a_checkpoint_of_the_flat_layout_resumes(tmp_path):
    tiny = ["net.width=0.125", "net.head_hidden=32", "net.fpn_channels=16", "data.size=64", "batch_size=2"]
    cfg = apply_overrides(TrainConfig(), tiny + ["threads=1", "log_every=1", "warmup_steps=1", "steps=2"])
    train(cfg, tmp_path, progress=False, until=1)
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    payload["train_config"] = _old_layout(cfg)
    torch.save(payload, path)
    resumed = train(cfg, tmp_path, resume=True, progress=False)
    assert resumed["step"] == 2
