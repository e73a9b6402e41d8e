"""Attribution maps of a discriminator/critic: which pixels raise its "real" score.

Three methods, batched, on whatever device the discriminator is on:

- ``gradient`` (Simonyan et al. 2014): ``|dD/dx|``. Local: says which pixels would change the score most,
  not which ones made it; noisy on ReLU networks.
- ``integrated_gradients`` (Sundararajan et al. 2017): ``(x - b) * mean_a dD/dx(b + a (x - b))``, with
  baseline ``b`` the tile blurred heavily (the structure removed, the background level kept). Complete
  (the map sums to ``D(x) - D(b)`` up to the Riemann error), but it depends on the baseline, and the
  ``(x - b)`` factor makes it look like an edge map of the input whatever the network: this is the
  failure Adebayo et al. (2018) found for gradient x input, and why every map must pass the
  model-randomisation test below before it is reported.
- ``grad_cam`` (Selvaraju et al. 2017): ``ReLU(sum_k mean(dD/dA_k) A_k)`` of one convolutional layer
  (the deepest whose output is at least S/8 px wide), upsampled. Coarse (one value per 8x8 px at best);
  shows where, not which pixel; blind to evidence *against* "real" (the ReLU).

``sanity_check`` is the model-randomisation test: the maps of the trained discriminator are compared with
those of the same architecture with re-initialised weights (Spearman rank correlation of |map| per image).
A method whose maps hardly change (median correlation >= ``SANITY_MAX_RANK_CORR``) explains the input,
not the discriminator, and is not reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["METHODS", "attribute", "gradient", "integrated_gradients", "grad_cam", "scores", "randomised_copy",
           "sanity_check", "SanityResult", "SANITY_MAX_RANK_CORR"]

METHODS = ("integrated_gradients", "grad_cam", "gradient")
# Adebayo et al. call a method insensitive to the model when its randomised-model maps stay rank-correlated
# with the trained one's; fixed at 0.5 before any experiment (halfway between "same map" and "unrelated")
SANITY_MAX_RANK_CORR = 0.5
_BLUR_SIGMA = 6.0  # px: the IG baseline blur; tubules are 3-10 px wide, so it keeps only the background trend


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(x: np.ndarray, batch: int):
    for i in range(0, len(x), batch):
        yield i, x[i:i + batch]


def scores(model: nn.Module, tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    """D's score of each tile: (N, 1, S, S) float in [-1, 1] -> (N,) float64 (logit / critic value)."""
    dev, out = _device(model), []
    with torch.no_grad():
        for _, xb in _batches(tiles, batch):
            out.append(model(torch.as_tensor(xb, dtype=torch.float32, device=dev)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def gradient(model: nn.Module, tiles: np.ndarray, batch: int = 128) -> np.ndarray:
    """|dD/dx| of each tile: (N, 1, S, S) -> (N, S, S) float32."""
    dev, out = _device(model), []
    for _, xb in _batches(tiles, batch):
        x = torch.as_tensor(xb, dtype=torch.float32, device=dev).requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x)
        out.append(g.abs()[:, 0].cpu().numpy())
    return np.concatenate(out)


def blur_baseline(x: torch.Tensor, sigma: float = _BLUR_SIGMA) -> torch.Tensor:
    """(B, 1, S, S) -> the same blurred by a Gaussian of ``sigma`` px (reflect padding)."""
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    pad = min(r, x.shape[-1] - 1)
    k = k[r - pad:r + pad + 1]
    y = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))


def integrated_gradients(model: nn.Module, tiles: np.ndarray, steps: int = 16, batch: int = 64) -> np.ndarray:
    """Integrated gradients from the blurred-tile baseline: (N, 1, S, S) -> signed (N, S, S) float32.

    Midpoint Riemann sum over ``steps`` points; each chunk of ``batch`` tiles makes one forward/backward pass
    of ``batch * steps`` images.
    """
    dev, out = _device(model), []
    alphas = (torch.arange(steps, device=dev, dtype=torch.float32) + 0.5) / steps
    for _, xb in _batches(tiles, batch):
        x = torch.as_tensor(xb, dtype=torch.float32, device=dev)
        base = blur_baseline(x)
        path = base[None] + alphas[:, None, None, None, None] * (x - base)[None]  # (steps, B, 1, S, S)
        path = path.reshape(-1, *x.shape[1:]).requires_grad_(True)
        (g,) = torch.autograd.grad(model(path).sum(), path)
        g = g.reshape(steps, *x.shape).mean(0)
        out.append(((x - base) * g)[:, 0].detach().cpu().numpy())
    return np.concatenate(out)


def _cam_layer(model: nn.Module, size: int, dev) -> nn.Module:
    """The deepest Conv2d whose output is at least max(4, S/8) px wide (found by one dry run)."""
    shapes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: shapes.__setitem__(mod, o.shape[-1])))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size, device=dev))
    finally:
        for h in hooks:
            h.remove()
    ok = [m for m, w in shapes.items() if w >= max(4, size // 8)]  # insertion order = execution order
    if not ok:
        raise ValueError("grad_cam: the discriminator has no convolution at >= 4 px")
    return ok[-1]


def grad_cam(model: nn.Module, tiles: np.ndarray, batch: int = 128) -> np.ndarray:
    """Grad-CAM of D's score: (N, 1, S, S) -> (N, S, S) float32 >= 0, bilinearly upsampled."""
    dev, size, out = _device(model), tiles.shape[-1], []
    layer = _cam_layer(model, size, dev)
    for _, xb in _batches(tiles, batch):
        store = {}
        h = layer.register_forward_hook(lambda mod, i, o: store.__setitem__("a", o))
        try:
            x = torch.as_tensor(xb, dtype=torch.float32, device=dev)
            score = model(x)
        finally:
            h.remove()
        a = store["a"]  # (B, C, h, w)
        (g,) = torch.autograd.grad(score.sum(), a)
        cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))  # (B, 1, h, w)
        cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
        out.append(cam[:, 0].detach().cpu().numpy())
    return np.concatenate(out)


_FUNCS = {"integrated_gradients": integrated_gradients, "grad_cam": grad_cam, "gradient": gradient}


def attribute(model: nn.Module, tiles: np.ndarray, method: str, **kw) -> np.ndarray:
    """The ``method`` map (one of ``METHODS``) of each tile: (N, 1, S, S) -> (N, S, S) float32."""
    if method not in _FUNCS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    was_training = model.training
    model.eval()
    try:
        return _FUNCS[method](model, np.asarray(tiles, np.float32), **kw)
    finally:
        model.train(was_training)


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture with every weight and bias re-drawn (Kaiming-uniform as PyTorch's default
    conv init, seeded); normalisation scales are kept. Works through spectral-norm parametrisations
    (their ``original`` tensor is what gets re-drawn)."""
    rnd = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in rnd.named_parameters():
            if p.dim() > 1:
                bound = 1.0 / np.sqrt(p[0].numel())  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            elif name.endswith("bias"):
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.05)
    return rnd


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair of (N, P) arrays (average ranks are not needed: maps are
    continuous; ties only in constant rows, which get 0)."""
    ra = np.argsort(np.argsort(a, axis=1), axis=1).astype(np.float64)
    rb = np.argsort(np.argsort(b, axis=1), axis=1).astype(np.float64)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    flat = (a.std(1) == 0) | (b.std(1) == 0)
    return np.where(flat, 0.0, (ra * rb).sum(1) / np.maximum(den, 1e-12))


@dataclass
class SanityResult:
    """Model-randomisation test of one method: passed = median rank correlation < the limit."""

    method: str
    median_rank_corr: float
    n_images: int
    passed: bool


def sanity_check(model: nn.Module, tiles: np.ndarray, method: str, maps: np.ndarray | None = None,
                 seed: int = 0, **kw) -> SanityResult:
    """Adebayo et al.'s model-randomisation test on ``tiles`` (a few dozen suffice).

    ``maps``: the trained model's maps of ``tiles`` when already computed.
    """
    maps = attribute(model, tiles, method, **kw) if maps is None else maps
    rnd = attribute(randomised_copy(model, seed), tiles, method, **kw)
    n = len(tiles)
    rho = _spearman_rows(np.abs(maps.reshape(n, -1)), np.abs(rnd.reshape(n, -1)))
    med = float(np.median(rho)) if n else float("nan")
    return SanityResult(method, med, n, bool(n and med < SANITY_MAX_RANK_CORR))
