"""Config sections: validation names the dotted key; flat dotted dicts round-trip; files and overrides load."""

import json

import pytest

from mitogan.config import (Config, DenoiseConfig, PreprocessConfig, apply_overrides, from_flat, load_config,
                            save_config, to_flat)
from mitogan.errors import ConfigError


def test_flat_round_trip_is_identity():
    cfg = apply_overrides(Config(), ["preprocess.denoise.enabled=true", "model.arch=resnet", "optim.lr_g=1e-3"])
    flat = to_flat(cfg)
    assert flat["preprocess.denoise.h"] == 10.0 and flat["model.arch"] == "resnet"
    assert all("/" not in k for k in flat)  # Ray forbids "/" in config keys
    assert from_flat(Config, flat) == cfg


@pytest.mark.parametrize("flat, message", [
    ({"preprocess.denoise.hh": 3}, "preprocess.denoise.hh: unknown config key"),
    ({"preprocess.denoise.h": 300}, "preprocess.denoise.h: 300.0 is above the maximum 100.0"),
    ({"preprocess.denoise.template": 6}, "preprocess.denoise.template: must be odd"),
    ({"model.arch": "vit"}, "model.arch: 'vit' is not one of"),
    ({"train.steps": "many"}, "train.steps: expected an integer"),
    ({"train.amp": 1}, "train.amp: expected true/false"),
    ({"preprocess.normalize.low": 99.9, "preprocess.normalize.high": 1.0}, "preprocess.normalize.low: 99.9 must be below"),
    ({"optim.lr_g": None}, "optim.lr_g: must not be empty"),
    # NaN passes every `<`/`>` range check: non-finite numbers are refused for every float field
    ({"preprocess.tile.scale": float("nan")}, "preprocess.tile.scale: nan is not a finite number"),
    ({"optim.lr_g": float("inf")}, "optim.lr_g: inf is not a finite number"),
    ({"preprocess.quality.min_snr": float("inf")}, "min_snr: inf is not a finite"),  # no upper bound of its own
    ({"train.seed": 1e23}, "train.seed: 1e.23 is out of range"),  # an int field without its own upper bound
    ({"train.steps": 10**30}, "train.steps: 1000000000000000000000000000000 is out of range"),
])
def test_bad_values_name_the_key(flat, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_flat(Config, flat)


def test_override_parses_scalars():
    cfg = apply_overrides(Config(), ["optim.lr_d=3e-5", "train.threads=null", "augment.cutout=true"])
    assert cfg.optim.lr_d == 3e-5 and cfg.train.threads is None and cfg.augment.cutout is True
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(Config(), ["optim.lr_d"])


def test_load_config_yaml_nested_flat_and_section(tmp_path):
    nested = tmp_path / "a.yaml"
    nested.write_text("preprocess:\n  denoise:\n    enabled: true\n    h: 5\ntrain:\n  steps: 10\n")
    cfg = load_config(nested)
    assert cfg.preprocess.denoise.h == 5.0 and cfg.train.steps == 10
    # the preprocess section alone, from a whole-config file or from a bare one
    assert load_config(nested, PreprocessConfig, section="preprocess").denoise.enabled
    bare = tmp_path / "b.json"
    bare.write_text(json.dumps({"denoise.h": 7}))
    assert load_config(bare, PreprocessConfig, section="preprocess").denoise == DenoiseConfig(h=7.0)


def test_load_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: train.stepz: unknown config key"):
        load_config(typo)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_loads_back_identical(tmp_path):
    cfg = apply_overrides(Config(), ["loss.kind=wgan_gp", "preprocess.tile.stride=32"])
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg
