"""Networks conditioned on the source video (mitogan.models.conditional, ``model.condition: source``)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mitogan.config import Config, ModelConfig, from_flat, to_flat
from mitogan.models import (ConditionedDiscriminator, ConditionedGenerator, build_discriminator, build_generator,
                            discriminate_real, discriminator_from_config, generator_from_config)
from mitogan.models.conditional import class_prior
from mitogan.tiles import TileSet

ARCHS = ("dcgan", "resnet", "fastgan")


def _cfg(arch, **kw):
    return ModelConfig(arch=arch, latent_dim=16, g_width=8, d_width=8, condition="source", **kw)


def _shares(labels, k):
    return torch.bincount(labels, minlength=k).float() / len(labels)


def test_the_generator_draws_each_class_in_its_prior_share_as_a_fixed_function_of_z():
    g = build_generator(_cfg("dcgan"), 32, classes=3)
    assert isinstance(g, ConditionedGenerator)
    g.set_prior(torch.tensor([0.7, 0.2, 0.1]))
    z = torch.randn(40_000, 16, generator=torch.Generator().manual_seed(0))
    y = g.labels(z)
    assert torch.allclose(_shares(y, 3), torch.tensor([0.7, 0.2, 0.1]), atol=0.01)
    assert torch.equal(y, g.labels(z.clone()))
    # the class is read from z[:, 0] alone, by its quantile: the largest z[:, 0] are the last class
    order = torch.argsort(z[:, 0])
    assert torch.all(y[order][:-1] <= y[order][1:])
    # and it changes what is drawn: the same z as another class gives another image
    g.eval()
    z2 = z[:4].clone()
    z2[:, 0] = torch.tensor([-3.0, 3.0, -3.0, 3.0])
    other = z2.clone()
    other[:, 0] = -other[:, 0]
    assert not torch.allclose(g(z2), g(other))


def test_class_prior_counts_labels_and_refuses_labels_outside_the_classes():
    assert torch.allclose(class_prior([0, 0, 2, 2, 2, 1], 3), torch.tensor([2, 1, 3]) / 6)
    with pytest.raises(ValueError):
        class_prior([0, 3], 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_discriminator_starts_unconditional_and_projects_each_class_on_its_features(arch):
    torch.manual_seed(0)
    d = build_discriminator(_cfg(arch), 32, classes=3).eval()
    assert isinstance(d, ConditionedDiscriminator)
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        base = d.inner(x)
        assert torch.equal(d(x, y), base)  # embedding starts at 0
        d.embed.weight[1].normal_()
        d.set_prior(torch.tensor([0.5, 0.3, 0.2]))
        out = d(x, y)
        assert torch.allclose(out[y != 1], base[y != 1]) and not torch.allclose(out[y == 1], base[y == 1])
        # unlabelled (explain, an exported discriminator): the prior's expectation over the classes
        per_class = torch.stack([d(x, torch.full((6,), k)) for k in range(3)])  # (3, B)
        assert torch.allclose(d(x), (d.prior[:, None] * per_class).sum(0), atol=1e-5)
        # real images go through the inner network's forward_real (fastgan's reconstruction loss) as well
        logits, aux = discriminate_real(d, x, y)
        assert torch.allclose(logits, out, atol=1e-5) and (float(aux) > 0) == (arch == "fastgan")


@pytest.mark.parametrize("arch", ARCHS)
def test_conditioned_networks_rebuild_from_their_config_with_their_prior(arch):
    torch.manual_seed(0)
    g = build_generator(_cfg(arch), 32, classes=4)
    g.set_prior(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    d = build_discriminator(_cfg(arch), 32, classes=4)
    assert g.config["classes"] == d.config["classes"] == 4
    g2, d2 = generator_from_config(g.config), discriminator_from_config(d.config)
    g2.load_state_dict(g.state_dict()), d2.load_state_dict(d.state_dict())
    z = torch.randn(5, 16)
    g.eval(), g2.eval()
    with torch.no_grad():
        assert torch.equal(g(z), g2(z)) and torch.equal(g.labels(z), g2.labels(z))
        x = g(z)
        assert torch.equal(d.eval()(x, g.labels(z)), d2.eval()(x, g.labels(z)))


def _three_videos(n=48, size=32):
    """Tiles from three videos in shares 1/2, 1/3, 1/6, with source indices that are not 0..2."""
    rng = np.random.default_rng(0)
    tiles = rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32)
    source = np.repeat(np.array([4, 7, 9], np.int32), [n // 2, n // 3, n // 6])
    return TileSet(tiles, source, np.arange(n, dtype=np.int32), np.zeros((n, 2), np.int32), {})


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_a_conditioned_run_exports_a_bundle_that_draws_each_video_in_its_training_share(tmp_path):
    # train() → checkpoint → export_bundle → load_generator / torch.export / TorchScript → synth's check
    from mitogan.export import export_bundle, load_discriminator, load_generator, sample_latents
    from mitogan.synth import check_bundle_config
    from mitogan.train import load_checkpoint, train

    cfg = from_flat(Config, {"preprocess.tile.size": 32, "model.g_width": 4, "model.d_width": 4,
                             "model.latent_dim": 16, "model.condition": "source", "train.steps": 3,
                             "train.batch_size": 8, "train.n_samples": 8})
    train(cfg, _three_videos(), out_dir=tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["generator_config"]["classes"] == ckpt["discriminator_config"]["classes"] == 3
    assert float(ckpt["D"]["embed.weight"].abs().sum()) > 0  # the projection learned from labelled batches
    bundle = export_bundle(tmp_path / "run" / "checkpoint.pt", tmp_path / "bundle")
    g = load_generator(bundle)
    z = sample_latents(16, 30_000, seed=1)
    with torch.inference_mode():
        assert torch.allclose(_shares(g.labels(z), 3), torch.tensor([1 / 2, 1 / 3, 1 / 6]), atol=0.01)
        few = z[:6]
        img = g(few)
        assert torch.equal(img, torch.export.load(str(bundle / "generator.pt2")).module()(few))
        assert torch.equal(img, torch.jit.load(str(bundle / "generator.torchscript"))(few))
        ref_d = discriminator_from_config(ckpt["discriminator_config"])
        ref_d.load_state_dict(ckpt["D"])
        assert torch.equal(ref_d.eval()(img), load_discriminator(bundle)(img))
    config = json.loads((bundle / "config.json").read_text())
    check_bundle_config(bundle, config)  # synth accepts it as is
    config["generator"]["classes"] = 0
    from mitogan.errors import InputError

    with pytest.raises(InputError, match="generator.classes"):
        check_bundle_config(bundle, config)


def test_simulator_tiles_are_a_class_of_their_own_in_the_real_batches():
    from mitogan.train import _real_batch, _source_classes

    cfg = from_flat(Config, {"model.condition": "source", "train.sim_share": 0.25, "train.sim_config": "sim.yaml",
                             "train.batch_size": 4000})
    ts = _three_videos()
    labels, prior = _source_classes(ts, len(ts), cfg)
    assert labels.tolist() == [0] * 24 + [1] * 16 + [2] * 8
    assert torch.allclose(prior, torch.tensor([0.75 / 2, 0.75 / 3, 0.75 / 6, 0.25]))

    # what _real_batch reads besides the data: the RNG, the labels, the simulator tiles and D's class count
    st = SimpleNamespace(data_gen=torch.Generator().manual_seed(0), labels=torch.from_numpy(labels),
                         sim=torch.full((5, 1, 32, 32), 0.5), device=torch.device("cpu"),
                         D=build_discriminator(_cfg("dcgan"), 32, classes=4))
    x, y = _real_batch(st, cfg, torch.from_numpy(ts.tiles))
    is_sim = (x == 0.5).flatten(1).all(1)
    assert torch.equal(is_sim, y == 3) and 0.2 < float(is_sim.float().mean()) < 0.3
    assert torch.allclose(_shares(y[~is_sim], 3), torch.tensor([1 / 2, 1 / 3, 1 / 6]), atol=0.04)


def test_resuming_on_tiles_of_another_number_of_videos_is_a_one_line_error(tmp_path):
    from mitogan.errors import InputError
    from mitogan.train import train

    cfg = from_flat(Config, {"preprocess.tile.size": 32, "model.g_width": 4, "model.d_width": 4,
                             "model.latent_dim": 16, "model.condition": "source", "train.steps": 2,
                             "train.batch_size": 8, "train.n_samples": 8})
    ts = _three_videos()
    train(cfg, ts, out_dir=tmp_path / "run")
    two = ts.subset(np.flatnonzero(ts.source != 9))
    cfg4 = from_flat(Config, {**to_flat(cfg), "train.steps": 4})
    with pytest.raises(InputError, match="3 source videos, these tiles have 2"):
        train(cfg4, two, out_dir=tmp_path / "run", resume=tmp_path / "run")
