"""Architectures build at every size and option, map shapes as promised, round-trip through a state
dict, and every init scheme leaves the weight statistics it promises. FastGAN's own parts (skip-layer
excitation, the self-supervised discriminator) do what they claim, and its bundle reloads to the same function."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from mitogan.config import ModelConfig
from mitogan.models import (INIT_SCHEMES, build_discriminator, build_generator, config_problem,
                            discriminator_from_config, generator_from_config, init_weights)

ARCHS = ("dcgan", "resnet", "fastgan")


def _cfg(arch, **kw):
    return ModelConfig(arch=arch, latent_dim=16, g_width=8, d_width=8, **kw)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_range(arch, size):
    torch.manual_seed(0)
    g, d = build_generator(_cfg(arch), size), build_discriminator(_cfg(arch), size)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 1, size, size)
    assert x.abs().max() <= 1.0  # tanh output
    assert d(x).shape == (3,)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("g_norm,d_norm", [("batch", "spectral"), ("instance", "instance"), ("layer", "layer"),
                                           ("none", "none"), ("batch", "batch")])
def test_norm_options(arch, g_norm, d_norm):
    cfg = _cfg(arch, g_norm=g_norm, d_norm=d_norm, depth=1)
    g, d = build_generator(cfg, 32), build_discriminator(cfg, 32)
    out = d(g(torch.randn(2, 16)))
    assert out.shape == (2,) and torch.isfinite(out).all()
    has_sn = any("parametrizations" in n for n, _ in d.named_parameters())
    assert has_sn == (d_norm == "spectral")
    want = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "layer": nn.GroupNorm}.get(g_norm)
    if want is not None:
        assert any(isinstance(m, want) for m in g.modules())
    else:
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) for m in g.modules())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("act,module", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU),
                                        ("silu", nn.SiLU)])
def test_activation_options(arch, act, module):
    d = build_discriminator(_cfg(arch, activation=act), 32)
    assert any(isinstance(m, module) for m in d.modules())
    assert torch.isfinite(d(torch.rand(2, 1, 32, 32))).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_depth_adds_layers(arch):
    shallow = sum(p.numel() for p in build_generator(_cfg(arch, depth=0), 32).parameters())
    deep = sum(p.numel() for p in build_generator(_cfg(arch, depth=2), 32).parameters())
    assert deep > shallow


@pytest.mark.parametrize("arch", ARCHS)
def test_width_scales_parameters(arch):
    small = build_discriminator(_cfg(arch), 64)
    big = build_discriminator(ModelConfig(arch=arch, d_width=16), 64)
    ratio = sum(p.numel() for p in big.parameters()) / sum(p.numel() for p in small.parameters())
    assert 3.0 < ratio < 4.5  # conv parameters grow with width squared


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", ["G", "D"])
def test_save_load_identical_output(arch, which, tmp_path):
    # rebuild from the stored constructor args + a weights-only state dict: the same function
    torch.manual_seed(1)
    cfg = _cfg(arch, depth=1)
    net = build_generator(cfg, 32) if which == "G" else build_discriminator(cfg, 32)
    init_weights(net, "xavier_normal", 1.0)
    x = torch.randn(4, 16) if which == "G" else torch.rand(4, 1, 32, 32) * 2 - 1
    net.train()
    net(x)  # move BN running stats and spectral-norm vectors away from their defaults
    net.eval()
    torch.save({"config": net.config, "state": net.state_dict()}, tmp_path / "net.pt")
    blob = torch.load(tmp_path / "net.pt", weights_only=True)
    rebuilt = (generator_from_config if which == "G" else discriminator_from_config)(blob["config"])
    rebuilt.load_state_dict(blob["state"])
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(net(x), rebuilt(x))


def test_unknown_arch_or_setting_in_config_dict():
    with pytest.raises(ValueError, match="generator is of an unknown family 'vit'"):
        generator_from_config({"arch": "vit", "image_size": 32})
    # a setting another MitoGAN version's networks take: named, not Python's TypeError
    with pytest.raises(ValueError, match=r"discriminator has settings this MitoGAN does not know \(dark, zoom\)"):
        discriminator_from_config({"arch": "dcgan", "image_size": 32, "zoom": 2, "dark": True})
    assert config_problem("generator", [1]) == "its generator config is not a mapping"
    assert config_problem("generator", build_generator(_cfg("resnet"), 32).config) is None


def _conv_weights(net):
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


def _fans(w):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    return fan_in, fan_out


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_init_scheme_statistics(scheme, gain):
    torch.manual_seed(0)
    net = build_discriminator(ModelConfig(d_width=32, d_norm="batch"), 64)
    before = [w.detach().clone() for w in _conv_weights(net)]
    init_weights(net, scheme, gain)
    big = [(b, w) for b, w in zip(before, _conv_weights(net)) if w.numel() >= 4096]
    assert big
    for b, w in big:
        fan_in, fan_out = _fans(w)
        std = w.std().item()
        expected = {"dcgan_normal": 0.02 * gain,
                    "xavier_uniform": gain * math.sqrt(2.0 / (fan_in + fan_out)),
                    "xavier_normal": gain * math.sqrt(2.0 / (fan_in + fan_out)),
                    "kaiming_fan_in": gain * math.sqrt(2.0 / fan_in),
                    "kaiming_fan_out": gain * math.sqrt(2.0 / fan_out),
                    "orthogonal": gain / math.sqrt(max(w.shape[0], w[0].numel())),
                    "default": gain * b.std().item()}[scheme]
        assert std == pytest.approx(expected, rel=0.1), (scheme, w.shape)
        assert abs(w.mean().item()) < 0.1 * std + 1e-6
        if scheme != "default":
            assert not torch.equal(w, b)  # really re-drawn
    if scheme == "xavier_uniform":  # bounded support
        w = big[0][1]
        assert w.abs().max() <= gain * math.sqrt(6.0 / sum(_fans(w))) + 1e-6
    if scheme == "orthogonal":  # rows (or columns) orthonormal up to gain
        m = big[0][1].flatten(1)
        gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        assert torch.allclose(gram, gain ** 2 * torch.eye(gram.shape[0]), atol=1e-3 * gain ** 2)
    for m in net.modules():  # norms: weight 1 (dcgan: ~N(1, 0.02)), bias 0
        if isinstance(m, nn.BatchNorm2d):
            assert m.bias.abs().max() == 0
            tol = 0.2 * gain if scheme == "dcgan_normal" else 0.0
            assert (m.weight - 1).abs().max() <= tol


def test_init_reaches_spectral_norm_weights():
    net = build_discriminator(ModelConfig(d_width=16, d_norm="spectral"), 32)
    init_weights(net, "dcgan_normal", 2.0)
    orig = [p for n, p in net.named_parameters() if n.endswith("original") and p.numel() > 1000]
    assert orig and all(abs(p.std().item() - 0.04) < 0.005 for p in orig)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown init scheme"):
        init_weights(nn.Linear(2, 2), "lecun")


# ---------------------------------------------------------------------------------------------------
# FastGAN: skip-layer excitation, the self-supervised discriminator, and the bundle path


def test_fastgan_sle_pairs_follow_the_paper_and_shrink_for_small_tiles():
    from mitogan.models.fastgan import sle_pairs

    # the paper joins 4→64, 8→128, 16→256 (span 16); below 64 px the span is S/4 so one gate remains
    assert sle_pairs(256) == [(4, 64), (8, 128), (16, 256)]
    assert sle_pairs(64) == [(4, 64)] and sle_pairs(32) == [(4, 32)]
    g = build_generator(_cfg("fastgan"), 128)
    assert sorted(g.sle) == ["4_64", "8_128"]


def test_fastgan_sle_gates_carry_low_resolution_features_to_the_output():
    # the output depends on the 4x4 features through the gate as well as through the up-path: the gate's
    # weights get gradients, and with them zeroed (sigmoid(0) = 1/2 everywhere) the images change
    torch.manual_seed(0)
    g = init_weights(build_generator(_cfg("fastgan", g_norm="none"), 32), "xavier_normal").eval()
    z = torch.randn(4, 16)
    before = g(z)
    before.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.sle["4_32"].parameters())
    with torch.no_grad():
        for p in g.sle["4_32"].parameters():
            p.zero_()
        after = g(z)
    assert (before - after).abs().max() > 0.01 * before.abs().max()


def test_fastgan_builds_for_whole_256_px_frames():
    cfg = ModelConfig(arch="fastgan", latent_dim=8, g_width=4, d_width=4)
    g, d = build_generator(cfg, 256), build_discriminator(cfg, 256)
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 1, 256, 256) and d(x).shape == (2,)


def test_fastgan_refuses_tiles_too_small_for_its_discriminator():
    with pytest.raises(ValueError, match="fastgan needs image_size >= 32"):
        build_discriminator(_cfg("fastgan"), 16)


def test_fastgan_discriminator_reconstructs_real_images(tiles):
    from mitogan.models import discriminate_real

    torch.manual_seed(0)
    x = torch.from_numpy(tiles[:8])  # (8, 1, 32, 32) blobs on a dark background
    d = init_weights(build_discriminator(_cfg("fastgan"), 32), "xavier_normal")
    with torch.no_grad():  # eval: spectral norm's power iteration would move the weights between calls
        assert torch.equal(discriminate_real(d.eval(), x)[0], d(x))  # the same real/fake head as forward()
    d.train()
    logits, aux = discriminate_real(d, x)
    # the decoders learn: 20 Adam steps on the reconstruction loss alone at least halve it (one thread: these
    # small convolutions run ~10x slower when two threads compete with other processes for 2 cores)
    opt = torch.optim.Adam(d.parameters(), 2e-3)
    first, threads = float(aux.detach()), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(20):
            _, aux = discriminate_real(d, x)
            opt.zero_grad()
            aux.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert float(aux.detach()) < 0.5 * first
    # recon_weight 0: no decoders at all, and no auxiliary loss (as for every other family)
    plain = build_discriminator(_cfg("fastgan", recon_weight=0.0), 32)
    assert not hasattr(plain, "dec_all") and float(discriminate_real(plain, x)[1]) == 0.0
    assert float(discriminate_real(build_discriminator(_cfg("dcgan"), 32), x)[1]) == 0.0


NOISY = {"model.g_noise": True, "model.g_output": "clip"}
PIXEL = {"model.g_pixel_noise": True, "model.g_output": "clip"}
OPTICS = {"model.g_psf": True, "model.d_mbstd": True, "model.g_upsample": "bilinear"}


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("arch,extra", [("fastgan", {}), ("fastgan", NOISY), ("dcgan", NOISY), ("resnet", NOISY),
                                        ("dcgan", PIXEL), ("resnet", {**NOISY, **PIXEL}),
                                        ("dcgan", {**NOISY, **OPTICS}), ("fastgan", {**NOISY, **OPTICS}),
                                        ("resnet", {**PIXEL, **OPTICS})])
def test_bundle_reloads_to_the_same_generator_and_discriminator(arch, extra, tmp_path):
    # the real path: train() → checkpoint → export_bundle → load_generator / load_discriminator / torch.export
    import numpy as np

    from mitogan.config import Config, from_flat
    from mitogan.export import export_bundle, load_discriminator, load_generator, sample_latents
    from mitogan.synth import check_bundle_config
    from mitogan.train import load_checkpoint, train

    cfg = from_flat(Config, {"model.arch": arch, "preprocess.tile.size": 32, "model.g_width": 4,
                             "model.d_width": 4, "model.latent_dim": 16, "train.steps": 3, "train.batch_size": 8,
                             "train.n_samples": 8, "augment.gain": True, **extra})
    tiles = np.random.default_rng(0).uniform(-1, 1, (16, 1, 32, 32)).astype(np.float32)
    train(cfg, tiles, out_dir=tmp_path / "run")
    bundle = export_bundle(tmp_path / "run" / "checkpoint.pt", tmp_path / "bundle")
    ckpt = load_checkpoint(tmp_path / "run")
    ref_g = generator_from_config(ckpt["generator_config"])
    ref_g.load_state_dict(ckpt["EMA"])
    strengths = [p for n, p in ref_g.named_parameters() if n.endswith("strength")]
    assert bool(strengths) == cfg.model.g_noise and all(p.abs().sum() > 0 for p in strengths)  # trained
    ref_d = discriminator_from_config(ckpt["discriminator_config"])
    ref_d.load_state_dict(ckpt["D"])
    z = sample_latents(16, 5, seed=1)
    with torch.inference_mode():
        img = ref_g.eval()(z)
        assert torch.equal(img, load_generator(bundle)(z))
        assert torch.equal(img, torch.export.load(str(bundle / "generator.pt2")).module()(z))
        assert torch.equal(img, torch.jit.load(str(bundle / "generator.torchscript"))(z))
        assert torch.equal(ref_d.eval()(img), load_discriminator(bundle)(img))
    check_bundle_config(bundle, json.loads((bundle / "config.json").read_text()))  # synth accepts it as is


# ---------------------------------------------------------------- noise inputs and the clipped output


def test_every_generator_argument_maps_to_a_config_key():
    # synth checks a bundle's generator settings through this table: it must name every argument of every family
    import inspect

    from mitogan.config import Config, to_flat
    from mitogan.models import FAMILIES, generator_settings

    table, known = generator_settings(), to_flat(Config())
    for family in FAMILIES.values():
        assert set(inspect.signature(family.generator).parameters) <= set(table)
    assert set(table.values()) <= set(known)


@pytest.mark.parametrize("arch", ARCHS)
def test_noise_inputs_start_silent_and_only_add(arch):
    # strength 0 at the start: the same weights with and without noise inputs are the same function
    torch.manual_seed(2)
    plain = build_generator(_cfg(arch, depth=1, g_noise=False), 32).eval()
    noisy = build_generator(_cfg(arch, depth=1, g_noise=True), 32).eval()
    missing, unexpected = noisy.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith("strength") for k in missing)
    z = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(plain(z), noisy(z))
    # and the strengths learn: the loss reaches every one of them
    noisy.train()
    noisy(z).square().mean().backward()
    from mitogan.models.layers import ZNoise

    # noise at every resolution from 8 px up, the image's own included
    assert {m.size for m in noisy.modules() if isinstance(m, ZNoise)} == {8, 16, 32}
    strengths = [p for n, p in noisy.named_parameters() if n.endswith("strength")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in strengths)


@pytest.mark.parametrize("arch", ARCHS)
def test_noise_makes_fine_detail_that_is_a_fixed_function_of_z(arch):
    torch.manual_seed(3)
    g = build_generator(_cfg(arch, g_noise=True), 32).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.3)
        z = torch.randn(6, 16)
        x = g(z)
        assert torch.equal(x, g(z))  # synth and export rely on it: the same z, the same image
        rebuilt = generator_from_config(g.config)
        rebuilt.load_state_dict(g.state_dict())
        assert torch.equal(x, rebuilt.eval()(z))  # the noise's projections are rebuilt, not saved
        # a tiny change of z changes the noise everywhere: fine detail varies between samples
        assert (g(z + 1e-3) - x).abs().mean() > 10 * (g(z + 1e-6) - x).abs().mean() > 0


def test_noise_maps_are_white_unit_noise_independent_of_each_other():
    from mitogan.models.layers import ZNoise

    layer = ZNoise(latent_dim=32, size=64, channels=1, seed=0)
    with torch.no_grad():
        layer.strength.fill_(1.0)
        n = layer(torch.zeros(200, 1, 64, 64), torch.randn(200, 32))[:, 0]  # (200, 64, 64)
    assert abs(n.mean()) < 0.02 and abs(n.std() - 1) < 0.02
    flat = n - n.mean()

    def corr(a, b):
        return float((a * b).mean() / (a.std() * b.std()))

    assert abs(corr(flat[:, :, 1:], flat[:, :, :-1])) < 0.02  # neighbouring pixels
    assert abs(corr(flat[:, 1:], flat[:, :-1])) < 0.02
    assert abs(corr(flat[1:], flat[:-1])) < 0.02  # two samples
    mean_map = flat.mean(0)  # no fixed pattern: the mean over samples is as flat as white noise's
    assert mean_map.std() < 2.5 / math.sqrt(200)


def test_pixel_noise_is_drawn_at_the_level_the_generator_gives_per_pixel_and_per_sample():
    from mitogan.models.layers import PixelNoise

    layer = PixelNoise(latent_dim=32, size=32, seed=0)
    h = torch.zeros(64, 2, 32, 32)
    h[:, 0] = torch.linspace(-1, 1, 32)  # the image: any picture passes through
    h[:, 1, :, :16] = -30.0  # no noise on the left half (softplus(-30) ~ 1e-13)
    h[:, 1, :, 16:] = 2.0  # noise of 0.05 · softplus(2) on the right
    h[32:, 1] = -30.0  # and none at all in the second half of the batch: a clean video's tile
    z = torch.randn(64, 32)
    with torch.no_grad():
        noise = layer(h, z)[:, 0] - h[:, 0]
    assert noise[:, :, :16].abs().max() < 1e-6 and noise[32:].abs().max() < 1e-6
    expected = PixelNoise.LEVEL * float(nn.functional.softplus(torch.tensor(2.0)))
    assert abs(float(noise[:32, :, 16:].std()) / expected - 1) < 0.03


@pytest.mark.parametrize("arch", ARCHS)
def test_pixel_noise_starts_audible_and_the_generator_learns_its_level(arch):
    # unlike one strength starting at 0 (a stationary point: the loss sees the noise through its variance), the
    # drawn level starts near PixelNoise.LEVEL · softplus(0), so the last layer's level channel gets a gradient
    from mitogan.models.layers import PixelNoise, ZNoise

    torch.manual_seed(5)
    g = build_generator(_cfg(arch, g_noise=True, g_pixel_noise=True), 32)
    assert g.config["pixel_noise"] is True
    images = [m for m in g.modules()  # the noise on the image (the features at 32 px may have their own)
              if isinstance(m, PixelNoise) or isinstance(m, ZNoise) and m.strength.shape[1] == 1]
    assert len(images) == 1 and isinstance(images[0], PixelNoise)  # it replaces the image's one strength
    z = torch.randn(8, 16)
    g.eval()
    with torch.no_grad():
        x = g(z)
        assert torch.equal(x, g(z))
        rebuilt = generator_from_config(g.config)
        rebuilt.load_state_dict(g.state_dict())
        assert torch.equal(x, rebuilt.eval()(z))
        assert (g(z + 1e-3) - x).abs().mean() > 1e-3  # fine detail changes with z from the start
    g.train()
    x = g(z)
    (x - x.mean(dim=0)).square().mean().backward()  # a loss that depends on the samples' spread
    last = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    level_grad = last.weight.grad[:, 1] if isinstance(last, nn.ConvTranspose2d) else last.weight.grad[1]
    assert level_grad.abs().sum() > 0


def test_the_clipped_output_reaches_the_black_floor_and_tanh_does_not():
    from mitogan.models.layers import ClipTanh

    x = torch.tensor([-4.0, -1.6, -0.5, 0.0, 0.5, 1.6, 4.0])
    y = ClipTanh()(x)
    assert y[0] == -1 and y[1] == -1 and y[-1] == 1 and y[3] == 0
    assert torch.all(y[1:] >= y[:-1])  # monotone
    assert (torch.tanh(x) > -1).all()
    for arch in ARCHS:
        g = build_generator(_cfg(arch, g_output="clip"), 32)
        assert g(torch.randn(2, 16)).abs().max() <= 1.0
        assert g.config["output"] == "clip"


def test_resize_upsampling_turns_a_flat_input_into_a_flat_output_and_the_transposed_conv_does_not():
    # Odena et al. (2016): a stride-2 transposed conv draws each pixel of a 2x2 cell with other kernel taps, so
    # even a flat input comes out as a period-2 (checkerboard) pattern; nearest 2x + conv 3x3 keeps it flat
    from mitogan.models.dcgan import _up

    torch.manual_seed(4)
    flat = torch.ones(1, 8, 8, 8)
    with torch.no_grad():
        for how, checkered in (("transposed", True), ("resize", False)):
            out = nn.Sequential(*_up(8, 4, how, bias=False))(flat)[..., 2:-2, 2:-2]  # inside the border
            cells = out.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, C, h, w, 2, 2): every 2x2 cell
            within = cells.std(dim=(-1, -2)).mean()
            assert (within > 1e-2) == checkered, (how, float(within))
    from mitogan.config import ConfigError
    from mitogan.models import DCGANGenerator

    with pytest.raises(ConfigError, match="g_upsample"):
        _cfg("dcgan", g_upsample="bicubic")
    with pytest.raises(ValueError, match="upsampling"):
        DCGANGenerator(image_size=32, upsample="bicubic")


def test_bilinear_upsampling_leaves_weaker_aliases_than_nearest():
    # doubling the resolution leaves the input's spectrum mirrored above its old Nyquist frequency (0.25 cycles/px
    # of the output); nearest 2x (2x2 blocks) keeps much of it, bilinear 2x damps it. The conv 3x3 is set to pass
    # its input through, so only the upsampling shows
    from mitogan.models.dcgan import _up

    torch.manual_seed(5)
    x = torch.randn(16, 4, 16, 16)
    f = torch.fft.fftfreq(32).abs()
    high = (f[:, None] > 0.25) | (f[None, :] > 0.25)
    share = {}
    for how in ("resize", "bilinear"):
        up, conv = _up(4, 4, how, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[range(4), range(4), 1, 1] = 1.0
            power = torch.fft.fft2(conv(up(x))).abs() ** 2
        share[how] = float(power[..., high].sum() / power.sum())
    assert share["bilinear"] < 0.5 * share["resize"], share


# ---------------------------------------------------------------- the discriminator's minibatch standard deviation


def test_minibatch_std_appends_each_groups_spread_and_reads_0_on_copies():
    from mitogan.models.layers import MinibatchStd

    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStd()(x)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], x)
    # groups of 4: image i with i + 2, i + 4, i + 6 (i mod 2)
    for i in range(2):
        group = x[i::2]
        want = group.std(dim=0, unbiased=False).mean()
        assert torch.allclose(out[i::2, 3], want.expand(4, 4, 4), atol=1e-3)
    copies = x[:1].expand(8, 3, 4, 4)
    assert MinibatchStd()(copies)[:, 3].max() < 1e-3  # a repeated template has no spread
    # a batch that 4 does not divide takes the largest group that divides it; a batch of one reads 0
    assert MinibatchStd()(x[:6])[:, 3].unique().numel() == 2  # groups of 3
    assert MinibatchStd()(x[:1])[:, 3].abs().max() < 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_mbstd_discriminator_reads_the_other_images_of_its_batch(arch):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32, 32).clamp(-1, 1)
    for mbstd in (False, True):
        d = init_weights(build_discriminator(_cfg(arch, d_mbstd=mbstd), 32), "kaiming_fan_in", 1.0).eval()
        with torch.no_grad():
            alone = d(x)[0]
            with_copies = d(x[:1].expand(4, 1, 32, 32))[0]  # image 0 among copies of itself
        changed = float((alone - with_copies).abs() / alone.abs().clamp_min(1e-3))
        assert (changed > 1e-3) == mbstd, (arch, mbstd, changed)
    assert discriminator_from_config(d.config).config["mbstd"] is True


@pytest.mark.parametrize("arch", ARCHS)
def test_per_image_makes_a_mbstd_discriminators_score_of_an_image_independent_of_its_batch(arch):
    from mitogan.models.layers import MinibatchStd, per_image

    torch.manual_seed(0)
    real, x = torch.randn(32, 1, 32, 32).clamp(-1, 1), torch.randn(8, 1, 32, 32).clamp(-1, 1)
    d = init_weights(build_discriminator(_cfg(arch, d_mbstd=True), 32), "kaiming_fan_in", 1.0).eval()
    one = per_image(d, real)
    with torch.no_grad():
        scores = [one(b)[0] for b in (x[:1], x[:4], x[[0, 5, 6, 7]], x[:1].expand(4, 1, 32, 32))]
        assert all(torch.allclose(s, scores[0], rtol=1e-5, atol=1e-6) for s in scores)  # alone, among any
        assert not torch.allclose(d(x[:4])[0], d(x[[0, 5, 6, 7]])[0])  # the model itself reads its batch
        spread = [m for m in d.modules() if isinstance(m, MinibatchStd)][0]
        canonical = real[np.argsort([zlib.crc32(t.numpy().tobytes()) for t in real], kind="stable")]
        read = torch.cat([spread(h)[:, -1, 0, 0] for h in _before_mbstd(d, canonical)])
    fixed = [m for m in one.modules() if isinstance(m, MinibatchStd)][0].fixed
    assert fixed == pytest.approx(float(read.mean()), rel=1e-5) and spread.fixed is None  # the real tiles' own
    again = per_image(d, real.flip(0))  # the same tiles in another order: the same spread
    assert [m for m in again.modules() if isinstance(m, MinibatchStd)][0].fixed == pytest.approx(fixed, rel=1e-6)
    plain = build_discriminator(_cfg(arch), 32)
    assert per_image(plain, real) is plain


def _before_mbstd(d, real, batch=64):
    """What reaches a discriminator's MinibatchStd, per batch of ``batch`` real tiles."""
    from mitogan.models.layers import MinibatchStd

    seen = []
    hook = next(m for m in d.modules() if isinstance(m, MinibatchStd)).register_forward_hook(
        lambda m, i, o: seen.append(i[0]))
    for k in range(0, len(real), batch):
        d(real[k:k + batch])
    hook.remove()
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_only_a_discriminator_with_mbstd_learns_to_tell_a_repeated_template_from_varied_images(arch):
    # every image of both kinds of batch is drawn from the same distribution; a fake batch repeats one of them.
    # Image by image the two are the same, so only the batch's spread can separate them
    size = 32 if arch == "fastgan" else 16  # fastgan's smallest

    def batches(n=8):
        real = torch.rand(n, 1, size, size) * 2 - 1
        fake = (torch.rand(1, 1, size, size) * 2 - 1).expand(n, 1, size, size)
        return real, fake

    acc = {}
    for mbstd in (False, True):
        torch.manual_seed(1)
        d = build_discriminator(_cfg(arch, d_mbstd=mbstd, d_norm="none"), size)
        opt = torch.optim.Adam(d.parameters(), lr=2e-3)
        for _ in range(80):
            real, fake = batches()
            loss = nn.functional.softplus(-d(real)).mean() + nn.functional.softplus(d(fake)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            right = [((d(r) > 0).float().mean() + (d(f) < 0).float().mean()) / 2 for r, f in
                     (batches() for _ in range(30))]
        acc[mbstd] = float(torch.stack(right).mean())
    assert acc[True] > 0.9 and acc[False] < 0.7, acc


# ---------------------------------------------------------------- the optics: a learned point-spread function


def test_psf_blur_draws_a_normalised_gaussian_of_its_learned_width():
    from mitogan.models.layers import PSFBlur

    psf = PSFBlur()
    assert abs(float(psf.sigma().detach()) - 0.5) < 1e-6
    spread = []
    for sigma in (0.5, 1.0, 2.0, 5.0):  # 5 px is beyond what the kernel holds: kept at radius / 3
        psf.raw.data.fill_(math.log(math.expm1(sigma)))
        delta = torch.zeros(1, 1, 17, 17)
        delta[0, 0, 8, 8] = 1.0
        out = psf(delta)[0, 0].detach()
        assert abs(float(out.sum()) - 1.0) < 1e-5  # normalised: keeps the intensity
        y = torch.arange(17.0) - 8
        spread.append(float((out.sum(dim=1) * y ** 2).sum()))  # second moment along y
    # a Gaussian sampled at the pixels: its variance is σ² once σ is a pixel or more (at 0.5 px, 0.215)
    assert spread[0] < 0.3 and abs(spread[1] - 1.0) < 0.03, spread
    assert abs(spread[2] / 2.0 ** 2 - 1.0) < 0.03 and spread[3] == pytest.approx(spread[2]), spread
    assert float(psf.sigma()) == pytest.approx(2.0)
    psf.raw.data.fill_(0.0)
    flat = torch.full((2, 3, 8, 8), 0.7)
    assert torch.allclose(psf(flat), flat, atol=1e-6)  # reflected borders: no dark rim
    psf(torch.randn(2, 1, 8, 8)).pow(2).mean().backward()
    assert psf.raw.grad is not None and psf.raw.grad.abs() > 0  # σ is learned


@pytest.mark.parametrize("arch", ARCHS)
def test_psf_blurs_the_generators_image_before_the_camera_noise(arch):
    # optics, then camera: the blur takes the image's finest detail away, and the noise added after it keeps its
    def detail(x):
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())

    torch.manual_seed(0)
    z = torch.randn(8, 16)
    out = {}
    for psf in (False, True):
        for noise in (False, True):
            torch.manual_seed(1)
            g = build_generator(_cfg(arch, g_psf=psf, g_noise=noise, g_output="tanh"), 32).eval()
            if psf:
                _psf(g).raw.data.fill_(math.log(math.expm1(2.0)))  # σ = 2 px
            for name, p in g.named_parameters():
                if name.endswith("strength"):  # the noise inputs, loud
                    p.data.fill_(1.0)
            with torch.no_grad():
                out[psf, noise] = detail(g(z))
    assert out[True, False] < 0.5 * out[False, False], out  # blurred
    assert out[True, True] > 2 * out[True, False], out  # the noise is not


def _psf(g):
    from mitogan.models.layers import PSFBlur

    return next(m for m in g.modules() if isinstance(m, PSFBlur))
