"""The training loop: every architecture × loss × init trains; reports, files, checkpoints, resume
equivalence, atomic checkpoints, stop hook, divergence signals, bad configs and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mitogan.config import Config, from_flat, to_flat
from mitogan.errors import ConfigError, InputError
from mitogan.models import INIT_SCHEMES, generator_from_config
from mitogan.report import MEASURED
from mitogan.tiles import TileSet, save_tiles
from mitogan.train import SIGNALS, load_checkpoint, train

TINY = {"preprocess.tile.size": 32, "model.g_width": 8, "model.d_width": 8, "model.latent_dim": 16,
        "train.batch_size": 4, "train.steps": 2, "train.report_every": 1, "train.n_samples": 8,
        "train.eval_samples": 8, "train.threads": 1}
# wall-clock, path, and the planned length (resume tests extend a run): differ between otherwise equal runs
VOLATILE = ("steps_per_s", "checkpoint", "steps_total")


def _cfg(**kw) -> Config:
    return from_flat(Config, {**TINY, **kw})


def _stable(history):
    return [{k: v for k, v in h.items() if k not in VOLATILE} for h in history]


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("loss", ["bce", "wgan_clip", "wgan_gp", "hinge"])
@pytest.mark.parametrize("init", INIT_SCHEMES)
def test_every_combination_trains(arch, loss, init, tiles):
    cfg = _cfg(**{"model.arch": arch, "loss.kind": loss, "init.scheme": init, "loss.n_critic": 2,
                  "loss.r1_gamma": 1.0 if loss == "hinge" else 0.0})
    result = train(cfg, tiles)
    assert result.steps == 2 and not result.stopped
    r = result.report
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "wasserstein", "grad_norm_d", "grad_norm_g"):
        assert math.isfinite(r[key]), key
    assert r["wasserstein"] == pytest.approx(r["d_real"] - r["d_fake"])
    assert r["nonfinite"] == 0 and r["signal_nonfinite"] == 0
    if loss == "wgan_gp" or loss == "hinge":
        assert r["penalty"] > 0  # gradient penalty / R1 term is in the loss


def test_report_contents_and_hooks(tiles, tmp_path):
    seen, evals = [], []

    def evaluate(fakes):
        evals.append(fakes.shape)
        assert fakes.dtype == np.float32 and np.abs(fakes).max() <= 1.0
        return {"kid_test": 0.5}

    cfg = _cfg(**{"train.steps": 4, "train.report_every": 2, "train.sample_every": 4,
                  "train.checkpoint_every": 2, "train.eval_every": 2})
    result = train(cfg, tiles, out_dir=tmp_path, on_report=seen.append, evaluate=evaluate)
    assert [r["step"] for r in seen] == [2, 4]
    for r in seen:
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "wasserstein", "grad_norm_d", "grad_norm_g",
                    "diversity", "aug_p", "nonfinite", "critic_drift", "signal_any", *SIGNALS):
            assert isinstance(r[key], (int, float)), key
        # every key the typed report (mitogan.report.TrainReport) declares for every report is there
        assert set(MEASURED) <= set(r) and r["steps_total"] == 4
        assert r["checkpoint"] == str(tmp_path / "checkpoint.pt")
        assert r["kid_test"] == 0.5
    assert "samples" not in seen[0] and seen[1]["samples"].shape == (8, 1, 32, 32)
    assert np.abs(seen[1]["samples"]).max() <= 1.0
    assert evals == [(8, 1, 32, 32)] * 2
    # run folder: resolved config, one JSON line per report (no arrays), grids, plots, checkpoint
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [2, 4] and "samples" not in lines[1]
    assert lines == json.loads(json.dumps(result.history))
    assert (tmp_path / "samples" / "step_000004.png").is_file()
    for name in ("config.yaml", "loss_curves.png", "signals.png", "checkpoint.pt"):
        assert (tmp_path / name).is_file(), name
    assert load_checkpoint(tmp_path)["step"] == 4
    assert not result.generator.training


def test_without_logs_a_run_writes_no_metrics_log_or_plots_and_trains_the_same(tiles, tmp_path):
    """``logs=False`` (search trials): no metrics.jsonl, loss_curves.png or signals.png; the config, grids and
    checkpoint are written, and the run is the same run."""
    cfg = _cfg(**{"train.steps": 4, "train.report_every": 2, "train.sample_every": 4, "train.checkpoint_every": 2})
    full = train(cfg, tiles, out_dir=tmp_path / "full")
    bare = train(cfg, tiles, out_dir=tmp_path / "bare", logs=False)
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["checkpoint.pt", "config.yaml", "samples"]
    assert (tmp_path / "bare" / "samples" / "step_000004.png").is_file()
    assert {"metrics.jsonl", "loss_curves.png", "signals.png"} <= {p.name for p in (tmp_path / "full").iterdir()}
    assert _stable(bare.history) == _stable(full.history)
    assert load_checkpoint(tmp_path / "bare")["step"] == 4


def test_deterministic_on_cpu(tiles):
    cfg = _cfg(**{"train.steps": 3, "augment.cutout": True})
    a, b = train(cfg, tiles), train(cfg, tiles)
    assert _stable(a.history) == _stable(b.history)
    for pa, pb in zip(a.generator.state_dict().values(), b.generator.state_dict().values()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("extra", [
    {"loss.kind": "wgan_gp", "loss.n_critic": 2, "augment.adaptive": True, "augment.p": 0.2,
     "augment.ada_interval": 1, "augment.ada_kimg": 0.1},
    {"model.arch": "resnet", "loss.kind": "hinge", "optim.name": "rmsprop", "loss.r1_gamma": 0.5,
     "model.d_norm": "batch", "loss.spectral": 2.0},  # the spectral loss's real batches, drawn the same on resume
])
def test_resume_equals_straight_run(extra, tiles, tmp_path):
    # N steps straight == N/2, then resume for N/2 more: same weights, same metrics
    base = {"train.report_every": 2, "train.checkpoint_every": 2, **extra}
    straight = train(_cfg(**base, **{"train.steps": 8}), tiles, out_dir=tmp_path / "a")
    first = train(_cfg(**base, **{"train.steps": 4}), tiles, out_dir=tmp_path / "b")
    assert first.steps == 4
    second = train(_cfg(**base, **{"train.steps": 8}), tiles, out_dir=tmp_path / "b", resume=tmp_path / "b")
    assert second.steps == 8
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for part in ("G", "D", "EMA"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert _stable(second.history) == _stable(straight.history)
    assert a["ada"]["p"] == b["ada"]["p"]
    if extra.get("augment.adaptive"):
        assert a["ada"]["p"] != 0.2  # the adaptive p moved, identically in both runs
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [2, 4, 6, 8]


def test_spectral_loss_is_in_the_generator_loss(tiles):
    # the same run with the spectral loss on: D's first step is the same, G's loss holds the extra term after it
    plain = train(_cfg(**{"train.steps": 2, "train.report_every": 1}), tiles)
    spectral = train(_cfg(**{"train.steps": 2, "train.report_every": 1, "loss.spectral": 5.0}), tiles)
    assert spectral.history[0]["loss_d"] == plain.history[0]["loss_d"]
    assert spectral.history[0]["loss_g"] > plain.history[0]["loss_g"]  # + 5 x a distance that is not 0
    # and the distance is reported alone, unweighted: loss_g less 5 x it is the adversarial loss of the plain run
    first = spectral.history[0]
    assert first["loss_spectral"] > 0 and "loss_spectral" not in plain.history[0]
    assert first["loss_g"] - 5.0 * first["loss_spectral"] == pytest.approx(plain.history[0]["loss_g"], abs=1e-5)


def test_should_stop_ends_cleanly_and_resumes(tiles, tmp_path):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3  # polled before the first step, then after each step: stop after step 3

    result = train(_cfg(**{"train.steps": 50}), tiles, out_dir=tmp_path, should_stop=stop)
    assert result.stopped and result.steps == 3
    assert result.report["checkpoint"] == str(tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    more = train(_cfg(**{"train.steps": 5}), tiles, out_dir=tmp_path, resume=tmp_path)
    assert more.steps == 5 and not more.stopped


def test_checkpoint_write_is_atomic(tiles, tmp_path, monkeypatch):
    # the second checkpoint dies halfway through writing: the first one must survive intact
    real_save = torch.save
    count = []

    def flaky_save(obj, f, *a, **kw):
        count.append(1)
        if len(count) == 2:
            f.write(b"partial garbage")
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", flaky_save)
    cfg = _cfg(**{"train.steps": 4, "train.checkpoint_every": 2})
    with pytest.raises(OSError, match="disk full"):
        train(cfg, tiles, out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []  # no temp file left
    monkeypatch.setattr(torch, "save", real_save)
    resumed = train(cfg, tiles, out_dir=tmp_path, resume=tmp_path)
    assert resumed.steps == 4


def test_ema_generator_rebuilds_from_checkpoint(tiles, tmp_path):
    result = train(_cfg(), tiles, out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path)
    g = generator_from_config(ckpt["generator_config"])
    g.load_state_dict(ckpt["EMA"])
    device = next(result.generator.parameters()).device  # the training device (CUDA where there is one)
    g.eval().to(device)
    z = torch.randn(3, 16, device=device)
    with torch.no_grad():
        assert torch.equal(g(z), result.generator(z))


def test_bad_wgan_init_shows_divergence_signals(tiles):
    # WGAN with weight clipping, a huge init gain and a huge learning rate: the critic estimate and the
    # gradient norms blow up, and the signals say so
    cfg = _cfg(**{"loss.kind": "wgan_clip", "init.scheme": "kaiming_fan_in", "init.gain": 100.0,
                  "optim.lr_d": 5.0, "optim.lr_g": 5.0, "model.g_norm": "none", "model.d_norm": "none",
                  "loss.clip": 10.0, "train.steps": 6, "train.report_every": 1})
    hist = train(cfg, tiles).history
    assert max(h["signal_critic_explode"] for h in hist) == 1
    assert max(h["signal_grad_blowup"] for h in hist) == 1
    assert max(h["signal_critic_drift"] for h in hist) == 1
    assert all(h["signal_any"] == 1 for h in hist)
    # the thresholds are cfg.stop's: raised beyond any value, the same run raises neither signal
    lax = train(from_flat(Config, {**to_flat(cfg), "stop.critic_limit": 1e300, "stop.grad_limit": 1e300}), tiles)
    assert max(h["signal_critic_explode"] + h["signal_grad_blowup"] for h in lax.history) == 0
    np.testing.assert_array_equal([h["wasserstein"] for h in lax.history], [h["wasserstein"] for h in hist])
    # the same model with a sane init and learning rate raises none of the divergence signals
    sane = train(_cfg(**{"loss.kind": "wgan_clip", "train.steps": 6}), tiles).history
    for h in sane:
        assert h["signal_critic_explode"] == h["signal_grad_blowup"] == h["signal_nonfinite"] == 0


def test_nonfinite_flag(tiles):
    bad = tiles.copy()
    bad[0, 0, 0, 0] = np.nan
    r = train(_cfg(**{"train.batch_size": 24, "train.steps": 1}), bad).report
    assert r["nonfinite"] == 1 and r["signal_nonfinite"] == 1


def test_bad_inputs(tiles, tmp_path):
    with pytest.raises(ConfigError, match=r"preprocess\.tile\.size: is 64 but the tiles are 32x32"):
        train(_cfg(**{"preprocess.tile.size": 64}), tiles)
    train(_cfg(), tiles, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"model\.g_width: the checkpoint .* was trained with 8"):
        train(_cfg(**{"model.g_width": 16}), tiles, resume=tmp_path)
    with pytest.raises(InputError, match="no checkpoint here"):
        train(_cfg(), tiles, resume=tmp_path / "missing")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        train(_cfg(), tiles, resume=tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match=r"train\.steps"):
        _cfg(**{"train.steps": 0})
    with pytest.raises(ConfigError, match=r"model\.widht"):
        _cfg(**{"model.widht": 8})


def test_tileset_input(tiles):
    result = train(_cfg(**{"train.steps": 1}), TileSet.from_array(tiles))
    assert result.steps == 1


# --------------------------------------------------------------------------------------------------- CLI


def _cli(argv):
    from mitogan.cli import main

    return main(argv)


def test_cli_smoke_run(tiles, tmp_path, capsys):
    data = save_tiles(tmp_path / "tiles.npz", TileSet.from_array(tiles))
    out = tmp_path / "run"
    argv = ["train", "--smoke", "--data", str(data), "--out", str(out), "--set", "preprocess.tile.size=32",
            "--set", "train.steps=4", "--set", "train.batch_size=4"]
    assert _cli(argv) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    assert "model:\n  arch: dcgan" in (out / "config.yaml").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # report_every 4 under --smoke
    assert _cli(argv[:-4] + ["--set", "train.steps=6", "--set", "train.batch_size=4", "--resume"]) == 0
    assert load_checkpoint(out)["step"] == 6


def test_cli_errors(tiles, tmp_path, capsys):
    data = save_tiles(tmp_path / "tiles.npz", TileSet.from_array(tiles))
    out = str(tmp_path / "run")
    # a size chosen by --set that the tiles do not have (without one, the tiles' own size is used)
    assert _cli(["train", "--smoke", "--data", str(data), "--out", out, "--set", "preprocess.tile.size=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tiles are 32x32 px but preprocess.tile.size is 64" in err
    assert _cli(["train", "--smoke", "--data", str(data), "--out", out, "--set", "loss.kind=lsgan"]) == 2
    assert "loss.kind: 'lsgan' is not one of" in capsys.readouterr().err
    assert _cli(["train", "--smoke", "--data", str(data), "--out", out, "--set", "optim.lr_g=-1"]) == 2
    assert "optim.lr_g: -1" in capsys.readouterr().err
    assert _cli(["train", "--data", str(data), "--out", out, "--set", "preprocess.tile.size=32", "--resume"]) == 2
    assert "no run to resume here" in capsys.readouterr().err  # an empty --out: nothing to resume


def test_cli_help_config_lists_every_key(capsys):
    from mitogan.config import to_flat

    with pytest.raises(SystemExit) as e:
        _cli(["train", "--help-config"])  # no --out needed, like --help
    assert e.value.code == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")}
    flat = to_flat(Config())
    assert set(rows) == set(flat)
    assert rows["loss.kind"] == "bce" and rows["stop.critic_limit"] == "1000.0" and rows["train.threads"] == "null"
    assert "{bce, wgan_clip, wgan_gp, hinge}" in out and "[0.0, 1.0]  share of train.steps" in out


def test_cli_wandb_offline(tiles, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    data = save_tiles(tmp_path / "tiles.npz", TileSet.from_array(tiles))
    out = tmp_path / "run"
    argv = ["train", "--smoke", "--wandb", "--data", str(data), "--out", str(out),
            "--set", "preprocess.tile.size=32", "--set", "train.steps=2", "--set", "train.batch_size=4"]
    assert _cli(argv) == 0
    assert list((out / "wandb").glob("offline-run-*"))


def test_a_checkpoint_from_before_the_generator_knobs_resumes_with_the_values_it_was_trained_with(tiles, tmp_path):
    # a checkpoint written before model.g_noise/g_output/g_upsample/g_pixel_noise existed has none of them in
    # its config: it was trained with noise off, tanh and transposed convolutions, whatever the defaults are now
    from mitogan.train import load_checkpoint, save_checkpoint

    then = {"model.g_noise": False, "model.g_output": "tanh", "model.g_upsample": "transposed"}
    train(_cfg(**then), tiles, out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    for key in (*then, "model.g_pixel_noise", "model.g_psf", "model.d_mbstd"):
        del ckpt["config"][key]
    save_checkpoint(tmp_path / "checkpoint.pt", ckpt)
    with pytest.raises(ConfigError, match=r"model\.g_noise: the checkpoint .* was trained with False, the config "
                                          r"says True"):
        train(_cfg(**{"model.g_noise": True, "train.steps": 4}), tiles, resume=tmp_path)
    for key in ("model.g_psf", "model.d_mbstd"):  # keys added later still: one clear line, not torch's key list
        with pytest.raises(ConfigError, match=rf"{key}: the checkpoint .* was trained with False"):
            train(_cfg(**{**then, key: True, "train.steps": 4}), tiles, resume=tmp_path)
    assert train(_cfg(**{**then, "train.steps": 4}), tiles, resume=tmp_path).steps == 4
