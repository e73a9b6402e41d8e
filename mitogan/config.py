"""Typed configuration: one dataclass per section, validated on construction, flat dotted keys for Ray.

Every field carries its documentation and its allowed values in ``metadata``::

    h: float = field(default=10.0, metadata=doc("NLM filter strength (uint8 grey levels)", lo=0, hi=100))

``Config`` nests sections; ``to_flat(cfg)`` gives ``{"preprocess.denoise.h": 10.0, ...}`` and
``from_flat(Config, flat)`` builds it back, rejecting unknown keys and out-of-range values with a
``ConfigError`` that names the dotted key. Config files are YAML or JSON, nested or flat.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mitogan.errors import ConfigError

__all__ = [
    "doc", "Section", "to_dict", "to_flat", "from_dict", "from_flat", "load_config", "apply_overrides", "parse_scalar",
    "save_config", "NormalizeConfig", "BleachConfig", "DriftConfig", "DenoiseConfig", "LaplaceConfig",
    "OtsuConfig", "TileConfig", "QualityConfig", "PreprocessConfig", "ModelConfig", "LossConfig",
    "InitConfig", "OptimConfig", "AugmentConfig", "TrainConfig", "StopConfig", "Config", "PLAIN_NETWORKS",
]


# Largest integer any config field accepts (fields with their own `hi` have smaller ones): seeds, steps and
# counts beyond it are typos or overflow torch/numpy.
INT_LIMIT = 2**31 - 1


def doc(help: str, *, lo=None, hi=None, choices=None) -> dict:
    """Field metadata: a one-line help text and the allowed range (inclusive) or choices."""
    return {"help": help, "lo": lo, "hi": hi, "choices": tuple(choices) if choices else None}


def _f(default, help: str, **kw):
    return field(default=default, metadata=doc(help, **kw))


def _sub(cls):
    return field(default_factory=cls, metadata=doc(cls.__doc__.strip().splitlines()[0]))


@dataclass
class Section:
    """Base of every config section: checks types, ranges and choices of its own fields."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check_value(f, hints[f.name], getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ConfigError naming the field."""


def _check_value(f: dataclasses.Field, hint, value):
    """Coerce/validate one value against its type hint and metadata; error names the field."""
    if isinstance(hint, type) and issubclass(hint, Section):
        if isinstance(value, dict):
            return _build(hint, value, prefix=f.name + ".")
        if not isinstance(value, hint):
            raise ConfigError(f"{f.name}: expected a {hint.__name__} section, got {value!r}")
        return value
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{f.name}: must not be empty (null)")
    value = _coerce(f.name, hint, value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{f.name}: {value!r} is not one of {list(meta['choices'])}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(f"{f.name}: {value!r} is below the minimum {meta['lo']}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(f"{f.name}: {value!r} is above the maximum {meta['hi']}")
    return value


def _coerce(name: str, hint, value):
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if abs(value) > INT_LIMIT:  # no field means 1e23 (nor does torch/numpy accept it as a seed)
            raise ConfigError(f"{name}: {value!r} is out of range (at most {INT_LIMIT})")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every `<`/`>` range check, so it is refused here
            raise ConfigError(f"{name}: {value!r} is not a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


# keys that moved: the stopping thresholds used to live in ``train`` (one home now: ``stop``)
_MOVED = {"train.explode_limit": "stop.critic_limit", "train.drift_limit": "stop.drift_limit",
          "train.grad_limit": "stop.grad_limit", "train.collapse_floor": "stop.diversity_floor"}


def _build(cls, data: dict, prefix: str = ""):
    """Build section ``cls`` from a nested dict; unknown keys and bad values name the dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        if f"{prefix}{unknown[0]}" in _MOVED:
            raise ConfigError(f"{prefix}{unknown[0]}: moved to {_MOVED[prefix + unknown[0]]} (rename it in the config)")
        raise ConfigError(f"{prefix}{unknown[0]}: unknown config key (known keys here: {sorted(names)})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        sub = hints[key]
        if isinstance(sub, type) and issubclass(sub, Section):
            kwargs[key] = _build(sub, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def to_dict(cfg: Section) -> dict:
    """Nested plain dict (JSON/YAML-ready)."""
    return dataclasses.asdict(cfg)


def to_flat(cfg: Section, prefix: str = "") -> dict[str, Any]:
    """Flat dict with dotted keys, e.g. ``{"preprocess.denoise.h": 10.0}`` (Ray forbids ``/`` in keys)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Section):
            out.update(to_flat(value, prefix=f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _unflatten(flat: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: '{part}' is a value, not a section")
        node[parts[-1]] = value
    return nested


def from_dict(cls, data: dict):
    """Build ``cls`` from a nested dict (missing keys take their defaults)."""
    return _build(cls, data)


def from_flat(cls, flat: dict[str, Any], base: Optional[Section] = None):
    """Build ``cls`` from dotted keys, on top of ``base`` (default: all defaults)."""
    nested = to_dict(base) if base is not None else {}
    _merge(nested, _unflatten(flat))
    return _build(cls, nested)


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def parse_scalar(text: str):
    """A ``--set`` value: int, float, else a YAML scalar (true, null, a string)."""
    import yaml

    for parse in (int, float):  # YAML 1.1 reads "1e-3" as a string
        try:
            return parse(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Section, overrides: list[str]):
    """Apply ``key=value`` strings (values parsed as YAML scalars) and return a new, validated config."""
    flat = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.steps=200")
        key, value = item.split("=", 1)
        flat[key.strip()] = parse_scalar(value.strip())
    return from_flat(type(cfg), flat, base=cfg) if flat else cfg


def _read_file(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def load_config(path=None, cls=None, overrides: Optional[list[str]] = None, section: Optional[str] = None):
    """Load a YAML/JSON config file (nested or flat dotted keys), then apply ``--set`` overrides.

    ``section`` picks a sub-section out of a whole-config file: ``load_config(p, PreprocessConfig,
    section="preprocess")`` accepts both a file with a top-level ``preprocess:`` key and a bare one.
    """
    cls = cls or Config
    data = _read_file(Path(path)) if path else {}
    if any("." in k for k in data):
        data = _unflatten(data)
    if section and section in data and set(data) <= {section} | {f.name for f in dataclasses.fields(Config)}:
        data = data[section]
    try:
        cfg = _build(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: Section, path) -> Path:
    """Write the resolved config as YAML (nested, every key explicit)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------------
# Preprocessing. Steps run in this order: bleach, drift (per video) → normalize, denoise, laplace, otsu
# (per frame) → tile. Each has ``enabled``.


@dataclass
class BleachConfig(Section):
    """Photobleaching correction across a video (frame intensities rescaled to the first frame's)."""

    enabled: bool = _f(False, "correct the intensity decay over time")
    method: str = _f("ratio", "ratio: per-frame mean ratio; exponential: fitted exp decay",
                     choices=("ratio", "exponential"))


@dataclass
class DriftConfig(Section):
    """Drift correction: register every frame to a reference by phase correlation."""

    enabled: bool = _f(False, "correct slow stage drift between frames")
    reference: str = _f("first", "register to the first frame or chain frame-to-previous",
                        choices=("first", "previous"))


@dataclass
class NormalizeConfig(Section):
    """Percentile intensity normalisation to [0, 1] (clipped)."""

    enabled: bool = _f(True, "map [p_low, p_high] percentiles to [0, 1]")
    low: float = _f(1.0, "lower percentile, mapped to 0", lo=0.0, hi=100.0)
    high: float = _f(99.8, "upper percentile, mapped to 1", lo=0.0, hi=100.0)
    per: str = _f("video", "compute percentiles per frame or per video", choices=("frame", "video"))

    def validate(self):
        if self.low >= self.high:
            raise ConfigError(f"low: {self.low} must be below high ({self.high})")


@dataclass
class DenoiseConfig(Section):
    """Non-local-means denoising (OpenCV fastNlMeansDenoising)."""

    enabled: bool = _f(False, "apply non-local-means denoising")
    h: float = _f(10.0, "filter strength in 8-bit grey levels (higher removes more noise and detail)",
                  lo=0.0, hi=100.0)
    template: int = _f(7, "template window side (odd)", lo=3, hi=21)
    search: int = _f(21, "search window side (odd)", lo=3, hi=51)

    def validate(self):
        for name in ("template", "search"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"{name}: must be odd, got {getattr(self, name)}")


@dataclass
class LaplaceConfig(Section):
    """Laplace edge enhancement: frame - weight * Laplacian(frame)."""

    enabled: bool = _f(False, "sharpen edges with a Laplacian")
    ksize: int = _f(3, "Laplacian aperture", choices=(1, 3, 5, 7))
    weight: float = _f(0.5, "blend weight of the (negative) Laplacian", lo=0.0, hi=5.0)


@dataclass
class OtsuConfig(Section):
    """Otsu thresholding: a binary mask, or intensities kept only inside the mask."""

    enabled: bool = _f(False, "apply Otsu thresholding")
    mode: str = _f("masked", "mask: binary foreground; masked: intensities inside the mask, 0 outside",
                   choices=("mask", "masked"))


@dataclass
class TileConfig(Section):
    """Resizing and tiling of frames into square training tiles."""

    size: int = _f(64, "tile side in pixels (the GAN's image size)", choices=(32, 64, 128, 256))
    scale: float = _f(1.0, "resize frames by this factor before tiling", lo=0.05, hi=4.0)
    stride: Optional[int] = _f(None, "step between tiles in pixels (None: = size, no overlap)", lo=4, hi=1024)
    min_foreground: float = _f(0.02, "skip tiles whose Otsu foreground fraction is below this", lo=0.0, hi=1.0)


@dataclass
class QualityConfig(Section):
    """Quality control: flag frames with no signal."""

    min_snr: float = _f(3.0, "frames whose signal-to-noise estimate is below this are flagged", lo=0.0)
    drop_flagged: bool = _f(True, "leave flagged frames out of the tiles (they are always reported)")


@dataclass
class PreprocessConfig(Section):
    """Preprocessing pipeline: the steps the search turns on and off."""

    bleach: BleachConfig = _sub(BleachConfig)
    drift: DriftConfig = _sub(DriftConfig)
    normalize: NormalizeConfig = _sub(NormalizeConfig)
    denoise: DenoiseConfig = _sub(DenoiseConfig)
    laplace: LaplaceConfig = _sub(LaplaceConfig)
    otsu: OtsuConfig = _sub(OtsuConfig)
    tile: TileConfig = _sub(TileConfig)
    quality: QualityConfig = _sub(QualityConfig)


# ----------------------------------------------------------------------------------------------------
# GAN training.


@dataclass
class ModelConfig(Section):
    """Generator/discriminator architecture."""

    arch: str = _f("dcgan", "network family (fastgan: skip-layer excitation generator, self-supervised "
                   "discriminator; Liu et al. 2021)", choices=("dcgan", "resnet", "fastgan"))
    latent_dim: int = _f(64, "size of the latent vector z", lo=2, hi=1024)
    g_width: int = _f(32, "generator channels at full resolution (doubles per stage down)", lo=4, hi=1024)
    d_width: int = _f(32, "discriminator channels at full resolution", lo=4, hi=1024)
    depth: int = _f(0, "extra 3x3 conv layers (or residual blocks) per resolution stage", lo=0, hi=4)
    g_norm: str = _f("batch", "generator normalisation", choices=("batch", "instance", "layer", "none"))
    g_noise: bool = _f(True, "per-pixel noise inputs in the generator, after each upsampling stage and on the "
                       "image, with learned strengths (StyleGAN's; drawn as a fixed function of z, so synth "
                       "stays reproducible): camera noise and fine stochastic detail")
    g_pixel_noise: bool = _f(False, "sensor noise on the image whose strength the generator draws per pixel "
                             "(its last layer gives the image and a noise level; noisy and clean videos, "
                             "brightness-dependent shot noise); replaces g_noise's one strength on the image")
    g_output: str = _f("clip", "generator output: tanh, or clip (1.1·tanh clipped to [-1, 1], so it can draw "
                       "the exact black floor of clipped, normalised data)", choices=("tanh", "clip"))
    g_upsample: str = _f("resize", "dcgan only: the generator's 2x upsampling, a transposed 4x4 conv (DCGAN), "
                         "resize (nearest 2x, conv 3x3: no checkerboard pattern) or bilinear (bilinear 2x, conv "
                         "3x3: no 2x2 blocks either)", choices=("transposed", "resize", "bilinear"))
    g_psf: bool = _f(False, "the generator's image passes a Gaussian blur of learned width (the microscope's "
                     "point-spread function, starting at σ 0.5 px) before the camera noise: fluorescence images "
                     "are band-limited by their optics")
    d_norm: str = _f("spectral", "discriminator normalisation",
                     choices=("batch", "instance", "layer", "spectral", "none"))
    d_mbstd: bool = _f(False, "the discriminator's minibatch standard deviation (ProGAN, StyleGAN2): the spread of "
                       "each group of 4 images as one more feature map, so it can see a generator that repeats "
                       "a few templates")
    activation: str = _f("leaky_relu", "hidden activation (the DCGAN generator uses relu where this says "
                         "leaky_relu, as in DCGAN; fastgan's generator uses it in its excitation gates only)",
                         choices=("relu", "leaky_relu", "elu", "silu"))
    recon_weight: float = _f(1.0, "fastgan only: weight of the discriminator's self-supervised reconstruction "
                             "loss on real images (0: no decoders)", lo=0.0, hi=100.0)


# both networks before the fine-detail knobs (the first four defaulted to this until 2026-12-07): no noise, tanh,
# transposed convolutions, no learned blur, no minibatch spread in D; what a checkpoint without these keys was
# trained with, and what tests built on those networks pin
PLAIN_NETWORKS = {"model.g_noise": False, "model.g_pixel_noise": False, "model.g_output": "tanh",
                  "model.g_upsample": "transposed", "model.g_psf": False, "model.d_mbstd": False}


@dataclass
class LossConfig(Section):
    """Adversarial loss and regularisers."""

    kind: str = _f("bce", "bce: non-saturating DCGAN; wgan_clip; wgan_gp; hinge",
                   choices=("bce", "wgan_clip", "wgan_gp", "hinge"))
    clip: float = _f(0.01, "critic weight clip (wgan_clip only)", lo=1e-5, hi=10.0)
    gp_lambda: float = _f(10.0, "gradient-penalty weight (wgan_gp only)", lo=0.0, hi=1000.0)
    r1_gamma: float = _f(0.0, "R1 penalty weight on real images (0: off)", lo=0.0, hi=1000.0)
    n_critic: int = _f(1, "discriminator steps per generator step", lo=1, hi=20)
    spectral: float = _f(0.0, "weight of the spectral loss on the generator: how far its tiles' log power per "
                         "ring of spatial frequency is from a real batch's, spread and all (1-D Wasserstein per "
                         "ring; 0: off; logged unweighted as loss_spectral)", lo=0.0, hi=100.0)


@dataclass
class InitConfig(Section):
    """Weight initialisation, applied per layer type (conv, linear, norm)."""

    scheme: str = _f("dcgan_normal", "initialisation scheme",
                     choices=("dcgan_normal", "xavier_uniform", "xavier_normal", "kaiming_fan_in",
                              "kaiming_fan_out", "orthogonal", "default"))
    gain: float = _f(1.0, "gain (scales the std; for dcgan_normal the std is 0.02 * gain)", lo=1e-4, hi=100.0)


@dataclass
class OptimConfig(Section):
    """Optimisers with separate G/D learning rates (TTUR)."""

    name: str = _f("adam", "optimiser", choices=("adam", "rmsprop"))
    lr_g: float = _f(2e-4, "generator learning rate", lo=1e-7, hi=10.0)
    lr_d: float = _f(2e-4, "discriminator learning rate", lo=1e-7, hi=10.0)
    beta1: float = _f(0.5, "Adam beta1", lo=0.0, hi=0.9999)
    beta2: float = _f(0.999, "Adam beta2 (RMSprop alpha)", lo=0.0, hi=0.99999)


@dataclass
class AugmentConfig(Section):
    """Differentiable augmentation applied to real and fake images alike (DiffAugment-style)."""

    translation: bool = _f(True, "random translation by up to 1/8 of the image")
    cutout: bool = _f(False, "random square cutout of half the image side")
    color: bool = _f(True, "random brightness/contrast")
    gain: bool = _f(False, "random intensity gain about the black level (-1), as laser power and labelling "
                    "vary while the background stays dark")
    flips: bool = _f(True, "random horizontal/vertical flips (label-preserving for microscopy)")
    rot90: bool = _f(True, "random 90-degree rotations")
    p: float = _f(1.0, "probability of augmenting each image", lo=0.0, hi=1.0)
    adaptive: bool = _f(False, "adapt p to keep the discriminator's real-sign accuracy near `target`")
    target: float = _f(0.6, "adaptive target for E[sign(D(real))]", lo=0.0, hi=1.0)
    ada_kimg: float = _f(20.0, "adaptive speed: thousands of images for p to move by 1", lo=0.01, hi=10000.0)
    ada_interval: int = _f(4, "discriminator steps between adaptive p updates", lo=1, hi=1000)


@dataclass
class TrainConfig(Section):
    """The training loop."""

    steps: int = _f(2000, "generator steps", lo=1)
    batch_size: int = _f(64, "images per batch", lo=2, hi=4096)
    seed: int = _f(0, "random seed (runs are deterministic on CPU)", lo=0)
    ema_decay: float = _f(0.999, "EMA of generator weights used for sampling/export (0: off)", lo=0.0, hi=1.0)
    report_every: int = _f(50, "steps between metric reports", lo=1)
    sample_every: int = _f(500, "steps between sample grids", lo=1)
    checkpoint_every: int = _f(500, "steps between checkpoints", lo=1)
    eval_every: int = _f(0, "steps between in-training metric evaluations (0: only at the end)", lo=0)
    device: str = _f("auto", "auto (CUDA if present), cpu or cuda", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(True, "mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = _f("bf16", "mixed-precision type on CUDA: bf16 (no loss scaling; Ampere and newer) or fp16 "
                        "(with GradScaler)", choices=("bf16", "fp16"))
    channels_last: bool = _f(True, "channels-last memory layout on CUDA, the layout cuDNN's fastest convolution "
                             "kernels use (ignored on CPU)")
    threads: Optional[int] = _f(None, "torch CPU threads (None: torch default)", lo=1, hi=256)
    n_samples: int = _f(64, "fixed-latent EMA samples for grids and the diversity figure", lo=2, hi=1024)
    eval_samples: int = _f(512, "EMA samples handed to the evaluator at eval steps", lo=2, hi=100000)
    judge_samples: int = _f(1000, "EMA samples of a FINISHED search trial's generator judged by the classifier "
                            "two-sample test against held-out tiles (0: skip the test)", lo=0, hi=100000)
    truncation_floor: float = _f(0.8, "the smallest truncation factor psi a FINISHED, judged search trial tries (1, "
                                 "0.9, ... down to it, on its judge's latents): the factor with the best judged_gap "
                                 "whose samples are not flagged as copying is kept, judged again on other latents, "
                                 "exported and drawn by synth (1: off; mitogan.truncation)", lo=0.1, hi=1.0)
    holdout: float = _f(0.25, "share of the real tiles held out (whole videos or time blocks) that the "
                        "generator is scored against and never trains on (mitogan.metrics.protocol)",
                        lo=0.05, hi=0.5)
    drift_window: int = _f(10, "reports in the window of the critic-drift measurement (critic_drift)", lo=3,
                           hi=10000)
    sim_share: float = _f(0.0, "share of each real batch the discriminator sees drawn from simulator tiles "
                          "(train.sim_config, preprocessed as the real tiles); held-out evaluation stays real-only "
                          "(mitogan.simmix)", lo=0.0, hi=0.9)
    sim_config: Optional[str] = _f(None, "the simulator behind train.sim_share: a fitted.yaml of `mitogan fit-sim` "
                                   "(or its --out folder, or any YAML of SimParams fields)")

    def validate(self):
        if self.sim_share > 0 and not self.sim_config:
            raise ConfigError(f"sim_config: train.sim_share is {self.sim_share} but no simulator is given (set "
                              "train.sim_config to a fitted.yaml of `mitogan fit-sim`, or train.sim_share=0)")


@dataclass
class StopConfig(Section):
    """Non-convergence: the one set of thresholds behind the signals and the stopping policy (mitogan.stopping)."""

    enabled: bool = _f(True, "stop a search trial that does not converge (a local `mitogan train` only reports "
                       "the signals)")
    grace: float = _f(0.25, "share of train.steps (at least one report) before which nothing but NaN/Inf stops a "
                      "run: neither this policy nor ASHA", lo=0.0, hi=1.0)
    patience: int = _f(2, "consecutive reports a signal must hold before the run is stopped", lo=1, hi=1000)
    critic_limit: float = _f(1e3, "signal_critic_explode when |critic estimate| exceeds this", lo=0.0)
    drift_limit: float = _f(50.0, "signal_critic_drift when the critic estimate's robust change over "
                            "train.drift_window reports exceeds this", lo=0.0)
    grad_limit: float = _f(1e4, "signal_grad_blowup when a gradient norm in the window exceeds this", lo=0.0)
    diversity_floor: float = _f(0.1, "signal_collapse when diversity (relative to real) drops below this",
                                lo=0.0, hi=10.0)


@dataclass
class Config(Section):
    """A whole MitoGAN trial: preprocessing and GAN training."""

    preprocess: PreprocessConfig = _sub(PreprocessConfig)
    model: ModelConfig = _sub(ModelConfig)
    loss: LossConfig = _sub(LossConfig)
    init: InitConfig = _sub(InitConfig)
    optim: OptimConfig = _sub(OptimConfig)
    augment: AugmentConfig = _sub(AugmentConfig)
    train: TrainConfig = _sub(TrainConfig)
    stop: StopConfig = _sub(StopConfig)

    @property
    def image_size(self) -> int:
        """The GAN's image size: the preprocessing tile size."""
        return self.preprocess.tile.size
