"""The training loop on a CUDA GPU: bf16 and fp16 autocast, channels-last, checkpoint and resume, and a bundle
exported from a GPU run that loads and draws the same images on the CPU. Skipped where no CUDA GPU is visible
(CI has none); run on a lent GPU machine with `pytest tests/mitogan/test_train_cuda.py`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitogan.config import Config, apply_overrides
from mitogan.errors import ConfigError
from mitogan.train import load_checkpoint, train

TINY = ["preprocess.tile.size=32", "model.g_width=8", "model.d_width=8", "model.latent_dim=16", "train.steps=20",
        "train.batch_size=16", "train.report_every=5", "train.checkpoint_every=10", "train.sample_every=10",
        "train.device=cuda"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tiles(n=64, s=32):
    return np.random.default_rng(0).uniform(-1, 1, (n, 1, s, s)).astype(np.float32)


def test_amp_dtype_is_checked_with_its_field_name():
    with pytest.raises(ConfigError, match="train.amp_dtype"):
        apply_overrides(Config(), ["train.amp_dtype=fp8"])


@cuda
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_mixed_precision_trains_finite_in_channels_last(arch, dtype, tmp_path):
    reports = []
    res = train(apply_overrides(Config(), [*TINY, f"model.arch={arch}", f"train.amp_dtype={dtype}"]), _tiles(),
                out_dir=tmp_path, on_report=reports.append)
    assert res.steps == 20 and next(res.generator.parameters()).is_cuda
    conv = next(m for m in res.generator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                and m.weight.dim() == 4 and m.weight.shape[1] > 1 and m.weight.shape[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for r in reports:
        assert np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) and np.isfinite(r["grad_norm_d"])
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 20
    # loss scaling only where it is needed: fp16; bf16 has fp32's exponent range
    assert bool(ckpt["scaler_g"]) == (dtype == "fp16")


@cuda
def test_cuda_resume_continues_from_the_checkpoint(tmp_path):
    cfg = apply_overrides(Config(), [*TINY, "train.steps=10"])
    train(cfg, _tiles(), out_dir=tmp_path)
    res = train(apply_overrides(cfg, ["train.steps=20"]), _tiles(), out_dir=tmp_path, resume=tmp_path)
    assert res.steps == 20
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 20


@cuda
def test_bundle_from_a_gpu_run_draws_the_same_images_on_the_cpu(tmp_path):
    import mitogan
    from mitogan.export import export_bundle, sample_latents

    train(apply_overrides(Config(), TINY), _tiles(), out_dir=tmp_path / "run")
    bundle = export_bundle(tmp_path / "run" / "checkpoint.pt", tmp_path / "bundle", metrics={"primary": 0.5},
                           source={"trial_id": "gpu"}, allow_copying=True)
    z = sample_latents(16, 8, seed=3)
    with torch.inference_mode():
        on_cpu = mitogan.load_generator(bundle)(z)
        on_gpu = mitogan.load_generator(bundle, device="cuda")(z.cuda()).cpu()
    assert on_cpu.shape == (8, 1, 32, 32)
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3)  # fp32 inference both; only kernel order differs
