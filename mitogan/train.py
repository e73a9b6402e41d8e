"""One GAN training run as a library function with hooks: ``train(cfg, tiles, ...) -> TrainResult``.

The loop counts *generator* steps; each one is preceded by ``cfg.loss.n_critic`` discriminator steps.
Real and fake images both pass through the same differentiable augmentation (``mitogan.augment``).
An EMA copy of the generator is kept for sampling, evaluation and export.
With ``train.sim_share`` > 0, that share of each real batch is drawn from simulator tiles instead
(``mitogan.simmix``); the held-out evaluation and the diversity reference stay real-only.

Hooks (all optional):
    on_report(report)   called every ``train.report_every`` steps and whenever a sample grid, checkpoint
                        or evaluation happens, and once at the end (so several cadences merge into one
                        report per step).
    should_stop()       polled after every step; True ends the run cleanly (checkpoint, final report,
                        ``result.stopped``).
    evaluate(fakes)     at ``train.eval_every`` steps and at the end, with (N, 1, S, S) float32 EMA samples
                        in [-1, 1]; the returned dict is merged into that step's report.

Reports are ``mitogan.report.TrainReport`` dicts: the keys and their meaning are declared there, once.
In short: ``step``, ``steps_total``, losses, mean D outputs, the critic estimate ``wasserstein``, gradient
norms (mean and max over the window), ``diversity`` of the fixed-latent EMA samples relative to real tiles,
``aug_p``, ``nonfinite``, ``critic_drift`` and ``steps_per_s``; then the 0/1 convergence signals
(``signal_*``, ``signal_any``), which ``mitogan.stopping.signals`` derives from those measurements with the
thresholds of ``cfg.stop``. The trainer only measures: whether a run stops is the caller's decision
(``should_stop``; the search uses ``mitogan.stopping.NonConvergencePolicy``). At some steps only:
``samples`` (every train.sample_every), ``checkpoint`` (every train.checkpoint_every and at the end) and
whatever ``evaluate`` returned.

Checkpoints are one file, ``out_dir/checkpoint.pt``, written atomically (``mitogan.fsutil.atomic_write``)
and loadable with ``torch.load(weights_only=True)``. They hold G, D, EMA, optimisers,
AMP scalers, the RNG states of python/numpy/torch/CUDA and the data sampler, the step, the adaptive
augmentation state and the report history, so ``resume=`` continues the very same run.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from mitogan import losses
from mitogan.augment import AdaptiveP, diff_augment
from mitogan.config import PLAIN_NETWORKS, Config, save_config, to_flat
from mitogan.errors import ConfigError, InputError
from mitogan.fsutil import atomic_write
from mitogan.models import build_discriminator, build_generator, config_problem, discriminate_real, init_weights
from mitogan.report import SIGNALS, TrainReport, scalars
from mitogan.simmix import sim_rows
from mitogan.stopping import signals

__all__ = ["train", "TrainResult", "load_checkpoint", "save_checkpoint", "CHECKPOINT_NAME", "SIGNALS"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1
_ACCUM = ("loss_d", "loss_g", "penalty", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


@dataclass
class TrainResult:
    """What a run produced. ``generator`` is the EMA generator in eval mode (on the training device)."""

    steps: int
    stopped: bool
    report: TrainReport
    history: list[dict]
    generator: nn.Module
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class _State:
    """Everything that changes during a run (and is checkpointed)."""

    G: nn.Module
    D: nn.Module
    ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    ada: AdaptiveP
    data_gen: torch.Generator
    z_fixed: torch.Tensor
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype = torch.bfloat16
    step: int = 0
    history: list = field(default_factory=list)
    acc: dict = field(default_factory=dict)
    sim: Optional[torch.Tensor] = None  # (M, 1, S, S) simulator tiles mixed into real batches (train.sim_share)
    sim_info: Optional[dict] = None  # their provenance (mitogan.simmix.sim_tiles), kept in the checkpoint


# ---------------------------------------------------------------------------------------------------
# set-up


def _device(train_cfg) -> torch.device:
    if train_cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available (use auto or cpu)")
    if train_cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def _as_tiles(tiles, image_size: int) -> np.ndarray:
    """(N, 1, S, S) float32 from a TileSet or array; the size must match the config."""
    arr = np.asarray(getattr(tiles, "tiles", tiles), dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] != 1 or arr.shape[2] != arr.shape[3] or arr.shape[0] == 0:
        raise InputError("tiles", f"expected a non-empty (N, 1, S, S) array, got shape {arr.shape}")
    if arr.shape[-1] != image_size:
        raise ConfigError(f"preprocess.tile.size: is {image_size} but the tiles are {arr.shape[-1]}x"
                          f"{arr.shape[-1]} px (set preprocess.tile.size={arr.shape[-1]} or re-tile the data)")
    return arr


def _optimizer(params, optim_cfg, lr: float) -> torch.optim.Optimizer:
    if optim_cfg.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(optim_cfg.beta1, optim_cfg.beta2))
    return torch.optim.RMSprop(params, lr=lr, alpha=optim_cfg.beta2)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build_state(cfg: Config, device: torch.device) -> _State:
    """Fresh networks (initialised), optimisers and RNGs for ``cfg``; seeds the global RNGs."""
    _seed(cfg.train.seed)
    G = init_weights(build_generator(cfg.model, cfg.image_size), cfg.init.scheme, cfg.init.gain).to(device)
    D = init_weights(build_discriminator(cfg.model, cfg.image_size), cfg.init.scheme, cfg.init.gain).to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    amp = device.type == "cuda" and cfg.train.amp
    amp_dtype = torch.float16 if cfg.train.amp_dtype == "fp16" else torch.bfloat16
    scale = amp and amp_dtype == torch.float16  # bf16 has fp32's range: no loss scaling, no overflow probe
    z_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    return _State(
        G=G, D=D, ema=ema,
        opt_g=_optimizer(G.parameters(), cfg.optim, cfg.optim.lr_g),
        opt_d=_optimizer(D.parameters(), cfg.optim, cfg.optim.lr_d),
        scaler_g=torch.amp.GradScaler("cuda", enabled=scale), scaler_d=torch.amp.GradScaler("cuda", enabled=scale),
        ada=AdaptiveP(cfg.augment.p, cfg.augment.target, cfg.augment.ada_kimg, cfg.augment.ada_interval),
        data_gen=torch.Generator().manual_seed(cfg.train.seed),
        z_fixed=torch.randn(cfg.train.n_samples, cfg.model.latent_dim, generator=z_gen).to(device),
        device=device, amp=amp, amp_dtype=amp_dtype, acc=_new_acc(device))


def _new_acc(device) -> dict:
    """Window accumulators as device tensors: the metrics are read back once per report, not per step.

    Between reports the loop reads nothing back from the GPU (the ADA statistic is read once per
    ``augment.ada_interval`` D steps); under AMP, ``GradScaler.step`` still checks for Inf/NaN gradients on
    the host every step, as it always does.
    """
    acc = {k: torch.zeros((), device=device) for k in _ACCUM}
    acc.update(grad_norm_d_max=torch.zeros((), device=device), grad_norm_g_max=torch.zeros((), device=device),
               nonfinite=torch.zeros((), device=device), n_d=0, n_g=0, t0=time.perf_counter())
    return acc


# ---------------------------------------------------------------------------------------------------
# one step


def _grad_norm(params, scaled: bool) -> torch.Tensor:
    """Global L2 norm of the (unscaled) gradients.

    Under fp16 loss scaling an Inf/NaN here is the GradScaler's overflow probe (it skips that step and lowers its
    scale), not a divergence, so it is reported as 0 rather than flagged as non-finite.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.nan_to_num(norm, nan=0.0, posinf=0.0) if scaled else norm


def _autocast(st: _State):
    return torch.autocast(device_type=st.device.type, dtype=st.amp_dtype, enabled=st.amp)


def _d_step(st: _State, cfg: Config, data: torch.Tensor) -> None:
    """One discriminator update on a random real batch and a fresh fake batch."""
    b, kind = cfg.train.batch_size, cfg.loss.kind
    real = _real_batch(st, cfg, data)
    z = torch.randn(b, cfg.model.latent_dim, device=st.device)
    with _autocast(st):
        with torch.no_grad():
            fake = st.G(z)  # (B, 1, S, S)
        real_a, fake_a = diff_augment(real, cfg.augment, st.ada.p), diff_augment(fake, cfg.augment, st.ada.p)
        out_r, aux = discriminate_real(st.D, real_a)  # (B,), a scalar (a self-supervised D's extra loss)
        out_f = st.D(fake_a)  # (B,)
        loss = losses.d_loss(kind, out_r, out_f)
    penalty = aux.float()
    with torch.autocast(device_type=st.device.type, enabled=False):  # penalties in fp32: double backprop
        if kind == "wgan_gp" and cfg.loss.gp_lambda > 0:
            penalty = penalty + cfg.loss.gp_lambda * losses.gradient_penalty(st.D, real_a.float(), fake_a.float())
        if cfg.loss.r1_gamma > 0:
            penalty = penalty + 0.5 * cfg.loss.r1_gamma * losses.r1_penalty(st.D, real_a.float())
    total = loss + penalty
    st.opt_d.zero_grad(set_to_none=True)
    st.scaler_d.scale(total).backward()
    st.scaler_d.unscale_(st.opt_d)
    gn = _grad_norm(st.D.parameters(), st.scaler_d.is_enabled())
    st.scaler_d.step(st.opt_d)
    st.scaler_d.update()
    if kind == "wgan_clip":
        losses.clip_weights(st.D, cfg.loss.clip)
    if cfg.augment.adaptive:
        st.ada.observe(out_r)
    _accumulate(st.acc, "d", loss_d=total, penalty=penalty, d_real=out_r.float().mean(),
                d_fake=out_f.float().mean(), grad_norm_d=gn)


def _real_batch(st: _State, cfg: Config, data: torch.Tensor) -> torch.Tensor:
    """The discriminator's "real" batch (B, 1, S, S): random real tiles, each replaced by a random simulator
    tile with probability train.sim_share when simulator tiles are mixed in (mitogan.simmix)."""
    b = cfg.train.batch_size
    # CPU generator (checkpointed, same stream on any device); the copy needs no wait for the GPU
    idx = torch.randint(data.shape[0], (b,), generator=st.data_gen).to(st.device, non_blocking=True)
    if st.sim is None:  # no extra draws: runs without simulator tiles keep their random stream
        return data[idx]
    take = sim_rows(b, cfg.train.sim_share, st.data_gen).to(st.device).view(b, 1, 1, 1)
    j = torch.randint(st.sim.shape[0], (b,), generator=st.data_gen).to(st.device, non_blocking=True)
    return torch.where(take, st.sim[j], data[idx])


def _g_step(st: _State, cfg: Config, data: torch.Tensor) -> None:
    """One generator update through the (frozen) discriminator, plus the spectral loss against a real batch
    when ``loss.spectral`` > 0, then the EMA update."""
    b = cfg.train.batch_size
    z = torch.randn(b, cfg.model.latent_dim, device=st.device)
    st.D.requires_grad_(False)  # no D gradients needed: saves a third of the backward
    with _autocast(st):
        fake = st.G(z)  # (B, 1, S, S)
        out = st.D(diff_augment(fake, cfg.augment, st.ada.p))  # (B,)
        loss = losses.g_loss(cfg.loss.kind, out)
    spectral = None
    if cfg.loss.spectral > 0:  # a real batch only then: runs without it keep their random stream
        spectral = losses.spectral_distance(fake, _real_batch(st, cfg, data))
        loss = loss + cfg.loss.spectral * spectral  # in loss_g, and reported alone (unweighted) as loss_spectral
    st.opt_g.zero_grad(set_to_none=True)
    st.scaler_g.scale(loss).backward()
    st.scaler_g.unscale_(st.opt_g)
    gn = _grad_norm(st.G.parameters(), st.scaler_g.is_enabled())
    st.scaler_g.step(st.opt_g)
    st.scaler_g.update()
    st.D.requires_grad_(True)
    _update_ema(st, cfg.train.ema_decay)
    _accumulate(st.acc, "g", loss_g=loss, grad_norm_g=gn, **({} if spectral is None else {"loss_spectral": spectral}))


@torch.no_grad()
def _update_ema(st: _State, decay: float) -> None:
    # warm-up: average over the steps so far while they are fewer than 1/(1-decay)
    d = min(decay, (1.0 + st.step) / (10.0 + st.step))
    torch._foreach_lerp_(list(st.ema.parameters()), list(st.G.parameters()), 1.0 - d)
    for be, b in zip(st.ema.buffers(), st.G.buffers()):
        be.copy_(b)


def _accumulate(acc: dict, who: str, **values) -> None:
    acc["n_" + who] += 1
    for k, v in values.items():
        v = v.detach().float()
        acc[k] = acc[k] + v if k in acc else v  # an optional term (loss_spectral) appears when first given
        acc["nonfinite"] = torch.maximum(acc["nonfinite"], (~torch.isfinite(v)).float())
    key = "grad_norm_" + who
    acc[key + "_max"] = torch.maximum(acc[key + "_max"], torch.nan_to_num(values[key].detach().float(), nan=math.inf))


# ---------------------------------------------------------------------------------------------------
# reports and signals


def _mean_pairwise(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance between the rows of (B, ...) (float64 for stability)."""
    return float(torch.pdist(x.flatten(1).double()).mean()) if x.shape[0] > 1 else 0.0


def _theil_sen(xs: list[float], ys: list[float]) -> float:
    """Median of pairwise slopes: a trend estimate that a few wild points cannot move."""
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if xs[j] != xs[i]]
    return float(np.median(slopes)) if slopes else 0.0


def _window_scalars(st: _State) -> dict:
    """Averages of the window accumulators (one device sync), then reset them."""
    acc = st.acc
    keys = list(_ACCUM) + ["grad_norm_d_max", "grad_norm_g_max", "nonfinite"]
    vals = torch.stack([acc[k].float().cpu() for k in keys]).tolist()
    out = dict(zip(keys, vals))
    for k in _ACCUM:
        n = acc["n_g"] if k in ("loss_g", "grad_norm_g") else acc["n_d"]
        out[k] = out[k] / n if n else float("nan")
    if "loss_spectral" in acc:  # the spectral loss alone, without its weight (it is inside loss_g as well)
        out["loss_spectral"] = float(acc["loss_spectral"]) / acc["n_g"] if acc["n_g"] else float("nan")
    dt = time.perf_counter() - acc["t0"]
    out["steps_per_s"] = acc["n_g"] / dt if dt > 0 else float("nan")
    st.acc = _new_acc(st.device)
    return out


def _critic_drift(r: dict, history: list[dict], window: int) -> float:
    """How far the critic estimate moved over the last ``window`` reports: Theil-Sen slope x span."""
    w = r["wasserstein"]
    tail = [h for h in history if math.isfinite(h.get("wasserstein", math.nan))][-(window - 1):]
    xs = [h["step"] for h in tail] + [r["step"]]
    ys = [h["wasserstein"] for h in tail] + [w]
    return _theil_sen(xs, ys) * (xs[-1] - xs[0]) if len(xs) >= 3 and math.isfinite(w) else 0.0


@torch.no_grad()
def _ema_samples(st: _State, z: torch.Tensor, batch: int = 256) -> np.ndarray:
    """EMA generator images for latents z (N, Z) → (N, 1, S, S) float32 numpy."""
    outs = [st.ema(z[i:i + batch].to(st.device)).float().cpu() for i in range(0, z.shape[0], batch)]
    return torch.cat(outs).numpy()


def _make_report(st: _State, cfg: Config, real_spread: float) -> tuple[TrainReport, np.ndarray]:
    """The measurements at the current step and their signals, plus the fixed-latent EMA samples (N, 1, S, S)."""
    r = {"step": st.step, "steps_total": cfg.train.steps}
    r.update(_window_scalars(st))
    r["wasserstein"] = r["d_real"] - r["d_fake"]
    samples = _ema_samples(st, st.z_fixed)
    finite = bool(np.isfinite(samples).all())
    r["diversity"] = _mean_pairwise(torch.from_numpy(samples)) / real_spread if finite else float("nan")
    r["nonfinite"] = float(max(r["nonfinite"], 0.0 if finite else 1.0))
    r["aug_p"] = float(st.ada.p)
    r["critic_drift"] = _critic_drift(r, st.history, cfg.train.drift_window)
    r.update(signals(r, cfg.stop))
    return r, samples


# ---------------------------------------------------------------------------------------------------
# checkpoints


def _rng_state(st: _State) -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])),
            "torch": torch.get_rng_state(), "data": st.data_gen.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(st: _State, rng: dict) -> None:
    py = rng["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    # RNG states are CPU byte tensors, whatever map_location moved the checkpoint to
    torch.set_rng_state(rng["torch"].cpu())
    st.data_gen.set_state(rng["data"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def save_checkpoint(path, obj: dict) -> Path:
    """Write ``obj`` with torch.save atomically (``mitogan.fsutil.atomic_write``).

    A crash at any point leaves either the previous checkpoint or the new one, never a torn file.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint file (or ``<dir>/checkpoint.pt``) safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(path, "no checkpoint here (nothing to resume; start without --resume)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise InputError(path, f"not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise InputError(path, "not a mitogan training checkpoint (or from an incompatible version)")
    for kind in ("generator", "discriminator"):  # networks this MitoGAN can rebuild, before any work
        problem = config_problem(kind, ckpt[f"{kind}_config"]) if f"{kind}_config" in ckpt else None
        if problem:
            raise InputError(path, problem)
    return ckpt


def _checkpoint_dict(st: _State, cfg: Config) -> dict:
    return {"version": CHECKPOINT_VERSION, "step": st.step, "config": to_flat(cfg),
            "generator_config": dict(st.G.config), "discriminator_config": dict(st.D.config),
            "G": st.G.state_dict(), "D": st.D.state_dict(), "EMA": st.ema.state_dict(),
            "opt_g": st.opt_g.state_dict(), "opt_d": st.opt_d.state_dict(),
            "scaler_g": st.scaler_g.state_dict(), "scaler_d": st.scaler_d.state_dict(),
            "ada": st.ada.state_dict(), "rng": _rng_state(st), "z_fixed": st.z_fixed.cpu(),
            "history": list(st.history), **({"sim": st.sim_info} if st.sim_info else {})}


_NOT_ARCHITECTURE = ("model.recon_weight",)  # a loss weight under model.: may change on resume (population-based)


def _restore(st: _State, ckpt: dict, cfg: Config, path) -> None:
    """Load a checkpoint into a freshly built state; the architecture must match the config. A checkpoint
    written before the generator's fine-detail keys existed was trained with the plain generator."""
    old = {k: v for k, v in {**PLAIN_NETWORKS, **ckpt["config"]}.items()
           if (k.startswith("model.") and k not in _NOT_ARCHITECTURE) or k == "preprocess.tile.size"}
    new = to_flat(cfg)
    for key, value in old.items():
        if new.get(key) != value:
            raise ConfigError(f"{key}: the checkpoint {path} was trained with {value!r}, the config says "
                              f"{new.get(key)!r} (resume needs the same architecture)")
    st.G.load_state_dict(ckpt["G"])
    st.D.load_state_dict(ckpt["D"])
    st.ema.load_state_dict(ckpt["EMA"])
    st.opt_g.load_state_dict(ckpt["opt_g"])
    st.opt_d.load_state_dict(ckpt["opt_d"])
    st.scaler_g.load_state_dict(ckpt["scaler_g"])
    st.scaler_d.load_state_dict(ckpt["scaler_d"])
    st.ada.load_state_dict(ckpt["ada"])
    _apply_training_values(st, cfg)
    st.z_fixed = ckpt["z_fixed"].to(st.device)
    st.step, st.history = int(ckpt["step"]), list(ckpt["history"])
    _set_rng_state(st, ckpt["rng"])


def _apply_training_values(st: _State, cfg: Config) -> None:
    """The config's learning rates and fixed augmentation strength over those loaded from a checkpoint: the
    same values on a plain resume; new ones when population-based training continues a run it copied with
    perturbed hyperparameters (the loss weights are read from the config at every step anyway)."""
    for opt, lr in ((st.opt_g, cfg.optim.lr_g), (st.opt_d, cfg.optim.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr
    if not cfg.augment.adaptive:
        st.ada.p = float(cfg.augment.p)


# ---------------------------------------------------------------------------------------------------
# run folder


def _json_line(report: dict) -> str:
    # NaN/Inf are not JSON: write null so any JSON reader can load the file
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()}
    return json.dumps(clean)


def _start_files(out: Path, cfg: Config, history: list[dict], logs: bool = True) -> dict[str, Path]:
    """Write the resolved config and (re)write metrics.jsonl from the history (drops lines past a resume)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(cfg, out / "config.yaml"), "checkpoint": out / CHECKPOINT_NAME,
             "samples": out / "samples"}
    if logs:
        paths["metrics"] = out / "metrics.jsonl"
        with open(paths["metrics"], "w") as f:
            f.writelines(_json_line(h) + "\n" for h in history)
    return paths


def _write_plots(out: Path, history: list[dict]) -> dict[str, Path]:
    """loss_curves.png (losses, critic estimate) and signals.png (diversity, gradient norms, signals)."""
    from mitogan.viz import save_line_plot

    def series(*keys):
        return {k: ([h["step"] for h in history], [h.get(k, math.nan) for h in history]) for k in keys}

    sig = series("diversity", "grad_norm_d", "grad_norm_g", *SIGNALS)
    losses_ = ["loss_d", "loss_g", "wasserstein"] + ["loss_spectral"] * any("loss_spectral" in h for h in history)
    return {"loss_curves": save_line_plot(series(*losses_), out / "loss_curves.png",
                                          title="losses and critic estimate", logy=True),
            "signals": save_line_plot(sig, out / "signals.png", title="convergence signals", logy=True)}


# ---------------------------------------------------------------------------------------------------
# the loop


def _events(step: int, final: bool, cfg: Config, has_out: bool, has_eval: bool) -> dict:
    t = cfg.train
    ev = {"report": step % t.report_every == 0 or final,
          "sample": step % t.sample_every == 0 or final,
          "checkpoint": has_out and (step % t.checkpoint_every == 0 or final),
          "eval": has_eval and ((t.eval_every > 0 and step % t.eval_every == 0) or final)}
    ev["any"] = any(ev.values())
    return ev


def _after_step(st: _State, cfg: Config, ev: dict, ctx: dict) -> Optional[dict]:
    """Report / sample / evaluate / checkpoint at this step as ``ev`` says; returns the report."""
    if not ev["any"]:
        return None
    report, samples = _make_report(st, cfg, ctx["real_spread"])
    if ev["sample"]:
        report["samples"] = samples
        if ctx["out"] is not None:
            from mitogan.viz import save_image_grid

            save_image_grid(samples, ctx["out"] / "samples" / f"step_{st.step:06d}.png")
    if ev["eval"]:
        z = torch.randn(cfg.train.eval_samples, cfg.model.latent_dim,
                        generator=torch.Generator().manual_seed(cfg.train.seed + 2))
        report.update(ctx["evaluate"](_ema_samples(st, z)) or {})
    if ev["checkpoint"]:
        report["checkpoint"] = str(ctx["paths"]["checkpoint"])
    st.history.append(scalars(report))
    if ev["checkpoint"]:
        save_checkpoint(ctx["paths"]["checkpoint"], _checkpoint_dict(st, cfg))
        if ctx["logs"]:
            ctx["paths"].update(_write_plots(ctx["out"], st.history))
    if ctx["out"] is not None and ctx["logs"]:
        with open(ctx["paths"]["metrics"], "a") as f:
            f.write(_json_line(st.history[-1]) + "\n")
    if ctx["on_report"] is not None:
        ctx["on_report"](report)
    return report


def train(cfg: Config, tiles, *, out_dir=None, on_report: Optional[Callable[[TrainReport], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, resume=None,
          evaluate: Optional[Callable[[np.ndarray], dict]] = None, progress: bool = False,
          logs: bool = True) -> TrainResult:
    """Train a GAN on ``tiles`` ((N, 1, S, S) float32 in [-1, 1], or a TileSet) for ``cfg.train.steps``.

    ``out_dir`` (optional) receives config.yaml, metrics.jsonl, samples/step_XXXXXX.png, loss_curves.png,
    signals.png and checkpoint.pt. ``resume`` is a checkpoint file or a folder holding checkpoint.pt; the
    run continues from its step with the same RNG streams (same numbers on CPU as an uninterrupted run).
    See the module docstring for the hooks and the report keys. ``progress`` shows a tqdm bar. ``logs=False``
    leaves out metrics.jsonl and the two plots (a search trial: Ray's result.json holds every report and the
    search report draws its own curves).
    """
    data_np = _as_tiles(tiles, cfg.image_size)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = _device(cfg.train)
    st = _build_state(cfg, device)
    if resume is not None:
        _restore(st, load_checkpoint(resume, map_location=device), cfg, resume)
    data = torch.from_numpy(data_np).to(device)
    _load_sim(st, cfg, getattr(tiles, "meta", None))
    ref = np.random.default_rng(cfg.train.seed).choice(len(data_np), min(cfg.train.n_samples, len(data_np)),
                                                       replace=False)
    out = Path(out_dir) if out_dir is not None else None
    ctx = {"out": out, "paths": _start_files(out, cfg, st.history, logs) if out is not None else {}, "logs": logs,
           "real_spread": max(_mean_pairwise(torch.from_numpy(data_np[np.sort(ref)])), 1e-12),
           "evaluate": evaluate, "on_report": on_report}
    stopped, report = _loop(st, cfg, data, ctx, should_stop, progress)
    if report is None:  # nothing happened this call (stopped at once, or resumed a finished run)
        report = _after_step(st, cfg, _events(st.step, True, cfg, out is not None, evaluate is not None), ctx)
    return TrainResult(steps=st.step, stopped=stopped, report=report, history=list(st.history),
                       generator=st.ema.eval(), paths=dict(ctx["paths"]))


def _load_sim(st: _State, cfg: Config, real_meta: Optional[dict]) -> None:
    """Simulator tiles into ``st`` when train.sim_share > 0. Only the discriminator's real batches see them:
    the diversity reference (``real_spread``) and any ``evaluate`` are built from the real tiles alone."""
    if cfg.train.sim_share <= 0:
        return
    from mitogan.simmix import sim_tiles

    sim_np, st.sim_info = sim_tiles(cfg, real_meta)
    st.sim = torch.from_numpy(_as_tiles(sim_np, cfg.image_size)).to(st.device)


def _loop(st: _State, cfg: Config, data: torch.Tensor, ctx: dict, should_stop, progress: bool):
    """Run steps until cfg.train.steps or should_stop(); returns (stopped, last report or None)."""
    from tqdm.auto import tqdm

    stopped = bool(should_stop and should_stop())
    report = None
    st.G.train(), st.D.train()
    with tqdm(total=cfg.train.steps, initial=min(st.step, cfg.train.steps), disable=not progress,
              desc="train", unit="step", dynamic_ncols=True) as bar:
        while not stopped and st.step < cfg.train.steps:
            for _ in range(cfg.loss.n_critic):
                _d_step(st, cfg, data)
            _g_step(st, cfg, data)
            st.step += 1
            bar.update(1)
            stopped = bool(should_stop and should_stop())
            final = stopped or st.step >= cfg.train.steps
            ev = _events(st.step, final, cfg, ctx["out"] is not None, ctx["evaluate"] is not None)
            r = _after_step(st, cfg, ev, ctx)
            if r is not None:
                report = r
                bar.set_postfix(loss_d=f"{r['loss_d']:.3g}", loss_g=f"{r['loss_g']:.3g}",
                                div=f"{r['diversity']:.2f}", refresh=False)
    return stopped, report
