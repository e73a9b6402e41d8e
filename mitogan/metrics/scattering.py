"""A fixed wavelet filter bank for fluorescence tiles: first- and second-order scattering statistics.

Why this (docs/metrics.md, "Choosing the feature space"): a scattering transform (Mallat 2012; Bruna &
Mallat 2013) is deterministic (no seed, nothing to train or download), stable to small deformations and
sensitive to exactly what damages a microscope image — blur removes the fine scales, noise fills them,
pixel shuffles break the coupling between scales that tubes and networks create. Implemented here in a few
lines of torch FFTs (Morlet wavelets built in the Fourier domain) instead of a dependency.

Per tile, for scales j = 0..J-1 (J = log2(S) - 2, so 4 at 64 px), L = 4 orientations:
    U1[j, l] = |x * psi_{j,l}|                      (wavelet modulus, S x S maps)
    s1_j       = log mean over space and orientations of U1          (energy at scale j)
    aniso_j    = mean over space of (max_l U1 - min_l U1) / sum_l U1  (tubes: high, blobs and noise: low)
    sparsity_j = std / mean over space of sum_l U1                    (a few bright objects: high)
    s2_{j1,j2} = log( mean |(sum_l U1[j1]) * ring_{j2}| / mean sum_l U1[j1] ), j2 > j1
                 (ring_j: the scale-j Morlets summed over orientations and symmetrised: isotropic)
                 (how energy at a fine scale is organised at a coarser one: structure vs texture)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mitogan.metrics.torch_threads import one_torch_thread

__all__ = ["SCATTER_VERSION", "scattering_features", "scattering_names", "n_scales"]

SCATTER_VERSION = "scatter-v3"  # part of the feature cache key: bump when the features change
_L = 4  # orientations
_EPS = 1e-4  # floor inside the logs, in units of the tile's [-1, 1] range


def n_scales(size: int) -> int:
    """Number of wavelet scales for a tile of ``size`` px (the coarsest wavelet spans ~ size / 2)."""
    return max(1, int(math.log2(size)) - 2)


def scattering_names(size: int) -> list[str]:
    """Names of the features ``scattering_features`` returns for tiles of ``size`` px, in order."""
    J = n_scales(size)
    names = [f"scat_s1_j{j}" for j in range(J)] + [f"scat_aniso_j{j}" for j in range(J)]
    names += [f"scat_sparsity_j{j}" for j in range(J)]
    names += [f"scat_s2_j{a}_j{b}" for a in range(J) for b in range(a + 1, J)]
    return names


def _morlet_bank(size: int, J: int) -> torch.Tensor:
    """Fourier-domain Morlet wavelets (J, L, size, size) float32, zero mean (no response to a constant)."""
    w = torch.fft.fftfreq(size, dtype=torch.float64) * 2 * math.pi
    wy, wx = torch.meshgrid(w, w, indexing="ij")
    bank = torch.empty(J, _L, size, size, dtype=torch.float64)
    for j in range(J):
        xi, sigma = 3 * math.pi / 4 / 2 ** j, 0.8 * 2 ** j  # centre frequency, spatial width (kymatio's)
        for l in range(_L):
            th = math.pi * l / _L
            par = wx * math.cos(th) + wy * math.sin(th)
            perp = -wx * math.sin(th) + wy * math.cos(th)
            slant = 4.0 / _L  # elongation across the orientation: wider bands for few orientations
            gabor = torch.exp(-0.5 * sigma ** 2 * ((par - xi) ** 2 + (perp / slant) ** 2))
            env = torch.exp(-0.5 * sigma ** 2 * (par ** 2 + (perp / slant) ** 2))
            bank[j, l] = gabor - gabor[0, 0] / env[0, 0] * env  # Morlet: subtract the DC leak
    return bank.float()


_BANKS: dict[int, torch.Tensor] = {}
_RINGS: dict[int, torch.Tensor] = {}


def _ring(size: int) -> torch.Tensor:
    """Isotropic band-pass filters (J, size, size) complex64: the sum of each scale's oriented Morlets, real
    part of the symmetrised spectrum, so one filter per scale serves the second order (4x fewer FFTs)."""
    if size not in _RINGS:
        b = _morlet_bank(size, n_scales(size)).sum(1)  # (J, S, S)
        flipped = torch.roll(torch.flip(b, (-2, -1)), shifts=(1, 1), dims=(-2, -1))  # b(-w)
        _RINGS[size] = ((b + flipped) / 2).to(torch.complex64)
    return _RINGS[size]


def _bank(size: int) -> torch.Tensor:
    """The Morlet bank (J, L, size, size) as complex64, once per size: a complex-by-complex product ran
    1.4-3x faster than complex-by-real (which converts the real factor on every call); same values."""
    if size not in _BANKS:
        _BANKS[size] = _morlet_bank(size, n_scales(size)).to(torch.complex64)
    return _BANKS[size]


def _factor(j: int) -> int:
    """Subsampling of scale j's maps: its band fits below the Nyquist frequency of a grid 2^(j-1) coarser."""
    return 2 ** max(0, j - 1)


def _downsample(spec: torch.Tensor, d: int) -> torch.Tensor:
    """Spectrum (..., S, S) of a signal -> spectrum (..., S/d, S/d) of that signal sampled every d px
    (the spectrum periodised: exact for band-limited signals, which a wavelet's output is).

    Summed block by block: a reshape-and-sum over the strided block axes of a complex tensor took 4x as
    long (the sums agree to float32 rounding)."""
    if d == 1:
        return spec
    m = spec.shape[-1] // d
    out = spec[..., :m, :m].clone()
    for i in range(d):
        for k in range(d):
            if i or k:
                out += spec[..., i * m:(i + 1) * m, k * m:(k + 1) * m]
    return out / d ** 2


def _modulus(c: torch.Tensor) -> torch.Tensor:
    """|c| of a complex tensor as sqrt(re^2 + im^2) in place: ~2x faster than ``hypot`` of its parts and
    ~3x faster than complex ``abs`` on the CPU (all three agree to float32 rounding)."""
    re, im = c.real, c.imag
    return (re * re).addcmul_(im, im).sqrt_()


def _std(maps: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Standard deviation (unbiased, as ``Tensor.std``) of each (b, h, w) map around its ``mean`` (b,), in two
    passes: 12x faster than ``std`` over two dimensions on the CPU, equal to float32 rounding (7e-8 relative)."""
    d = maps - mean[:, None, None]
    return (d * d).sum((-2, -1)).div_(maps.shape[-2] * maps.shape[-1] - 1).sqrt_()


@torch.no_grad()
def _batch(x: torch.Tensor) -> torch.Tensor:
    """(b, S, S) float32 -> (b, F) float32. Coarse scales are computed on coarser grids (kymatio-style)."""
    s = x.shape[-1]
    bank = _bank(s)  # (J, L, S, S)
    J = bank.shape[0]
    xf = torch.fft.fft2(x)[:, None]  # (b, 1, S, S)
    s1, aniso, sparsity, pooled = [], [], [], []
    for j in range(J):
        u1 = _modulus(torch.fft.ifft2(_downsample(xf * bank[j], _factor(j))))  # (b, L, S/d, S/d)
        pool = u1.sum(1)  # (b, S/d, S/d): orientation-invariant energy map
        mean = pool.mean((-2, -1))  # (b,)
        s1.append(torch.log(mean / _L + _EPS))
        aniso.append(((u1.amax(1) - u1.amin(1)) / (pool + _EPS)).mean((-2, -1)))
        sparsity.append(_std(pool, mean) / (mean + _EPS))
        pooled.append((pool, mean))
    # second order: each pooled map through an isotropic band-pass at every coarser scale
    s2 = []
    for a in range(J):
        pool, mean = pooled[a]
        pf, da = torch.fft.fft2(pool), _factor(a)
        ring = _ring(s // da)  # filters of the coarser grid: scale b there is scale b - log2(da) here
        for b in range(a + 1, J):
            band = _downsample(pf * ring[b - int(math.log2(da))], _factor(b) // da)
            s2.append(torch.log(_modulus(torch.fft.ifft2(band)).mean((-2, -1)) / (mean + _EPS) + _EPS))
    parts = [torch.stack(s1, 1), torch.stack(aniso, 1), torch.stack(sparsity, 1)] + ([torch.stack(s2, 1)] if s2 else [])
    return torch.cat(parts, 1)


def scattering_features(tiles: np.ndarray, batch: int = 32) -> np.ndarray:
    """Scattering statistics of each tile.

    Parameters
    ----------
    tiles : (N, 1, S, S) or (N, S, S) float in [-1, 1]
    batch : tiles per FFT batch (results do not depend on it). Small batches keep each step's
        ~ batch * 16 * S * S * 8 bytes in the CPU cache: 32 ran 2x faster than 256 at 64 px

    Returns
    -------
    (N, len(scattering_names(S))) float64, finite; identical on every call and machine (no randomness).
    """
    x = np.asarray(tiles, np.float32)
    x = x.reshape(x.shape[0], x.shape[-2], x.shape[-1])
    size = x.shape[-1]
    if len(x) == 0:
        return np.zeros((0, len(scattering_names(size))))
    with one_torch_thread():  # as the C2ST: small batched FFTs gain nothing from a second thread on shared cores
        out = [_batch(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).numpy() for i in range(0, len(x), batch)]
    return np.nan_to_num(np.concatenate(out).astype(np.float64))
