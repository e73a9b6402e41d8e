"""Generator bundles: round trip (bundle = TorchScript = checkpoint EMA), and every bad-bundle case."""

import json

import numpy as np
import pytest
import torch

import mitogan
from mitogan.config import Config, apply_overrides
from mitogan.errors import InputError
from mitogan.export import export_bundle, load_bundle_config, load_generator, sample_latents
from mitogan.models import generator_from_config
from mitogan.train import load_checkpoint, train

TINY = ["preprocess.tile.size=32", "model.g_width=8", "model.d_width=8", "model.latent_dim=16", "train.steps=4",
        "train.batch_size=8", "train.report_every=2", "train.checkpoint_every=2", "train.sample_every=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny) training run and its checkpoint."""
    out = tmp_path_factory.mktemp("run")
    tiles = np.random.default_rng(0).uniform(-1, 1, (32, 1, 32, 32)).astype(np.float32)
    train(apply_overrides(Config(), TINY), tiles, out_dir=out)
    return out / "checkpoint.pt"


@pytest.fixture
def bundle(trained, tmp_path):
    return export_bundle(trained, tmp_path / "bundle", metrics={"primary": 0.5}, source={"trial_id": "t1"},
                         intensity={"lo": 100.0, "hi": 900.0})


def test_bundle_torchscript_and_checkpoint_give_identical_images(trained, bundle):
    z = sample_latents(16, 8, seed=3)
    ckpt = load_checkpoint(trained)
    ref = generator_from_config(ckpt["generator_config"])
    ref.load_state_dict(ckpt["EMA"])
    ref.eval()
    with torch.inference_mode():
        a = ref(z)
        b = mitogan.load_generator(bundle)(z)
        c = torch.jit.load(str(bundle / "generator.torchscript"))(z)
    assert a.shape == (8, 1, 32, 32)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_bundle_contents(bundle):
    config = load_bundle_config(bundle)
    assert config["image_size"] == 32 and config["latent_dim"] == 16
    assert config["output"]["intensity"] == {"lo": 100.0, "hi": 900.0}
    assert json.loads((bundle / "metrics.json").read_text())["metrics"]["primary"] == 0.5
    card = (bundle / "README.md").read_text()
    assert "load_generator" in card and "Intended use" in card
    # weights are tensors only: a weights_only load works
    assert all(isinstance(v, torch.Tensor) for v in torch.load(bundle / "generator.pt", weights_only=True).values())


def test_latents_are_reproducible_per_index():
    full = sample_latents(16, 10, seed=1)
    assert torch.equal(sample_latents(16, 10, seed=1), full)
    assert not torch.equal(sample_latents(16, 10, seed=2), full)


def test_missing_file(bundle):
    (bundle / "generator.pt").unlink()
    with pytest.raises(InputError, match=r"generator.pt: missing: the bundle is incomplete"):
        load_generator(bundle)


def test_tampered_file(bundle):
    with open(bundle / "generator.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match=r"generator.pt: checksum mismatch"):
        load_generator(bundle)


def test_unknown_format_version(bundle):
    config = json.loads((bundle / "config.json").read_text())
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config))
    # re-sign so that only the version is wrong
    import hashlib
    lines = [f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}"
             for n in [line.split("  ")[1] for line in (bundle / "checksums.sha256").read_text().splitlines()]]
    (bundle / "checksums.sha256").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"config.json: unknown bundle format version 99"):
        load_generator(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="not a generator bundle directory"):
        load_generator(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"checksums.sha256: missing"):
        load_generator(tmp_path / "empty")
