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
    s2_{j1,j2} = log( mean |(sum_l U1[j1]) * psi_{j2}| / mean sum_l U1[j1] ), j2 > j1
                 (how energy at a fine scale is organised at a coarser one: structure vs texture)
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["SCATTER_VERSION", "scattering_features", "scattering_names", "n_scales"]

SCATTER_VERSION = "scatter-v1"  # part of the feature cache key: bump when the features change
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


def _bank(size: int) -> torch.Tensor:
    if size not in _BANKS:
        _BANKS[size] = _morlet_bank(size, n_scales(size))
    return _BANKS[size]


@torch.no_grad()
def _batch(x: torch.Tensor) -> torch.Tensor:
    """(b, S, S) float32 -> (b, F) float32."""
    s = x.shape[-1]
    bank = _bank(s)  # (J, L, S, S)
    J = bank.shape[0]
    xf = torch.fft.fft2(x)[:, None, None]  # (b, 1, 1, S, S)
    u1 = torch.fft.ifft2(xf * bank).abs()  # (b, J, L, S, S)
    pooled = u1.sum(2)  # (b, J, S, S): orientation-invariant energy map
    mean = pooled.mean((-2, -1))  # (b, J)
    s1 = torch.log(mean / _L + _EPS)
    aniso = ((u1.amax(2) - u1.amin(2)) / (pooled + _EPS)).mean((-2, -1))
    sparsity = pooled.std((-2, -1)) / (mean + _EPS)
    # second order: the orientation-pooled maps filtered by the coarser wavelets (orientation-averaged)
    pf = torch.fft.fft2(pooled)  # (b, J, S, S)
    s2 = []
    for a in range(J):
        for b in range(a + 1, J):
            u2 = torch.fft.ifft2(pf[:, a, None] * bank[b]).abs().mean((-3, -2, -1))  # (b,)
            s2.append(torch.log(u2 / (mean[:, a] + _EPS) + _EPS))
    parts = [s1, aniso, sparsity] + ([torch.stack(s2, 1)] if s2 else [])
    return torch.cat(parts, 1)


def scattering_features(tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    """Scattering statistics of each tile.

    Parameters
    ----------
    tiles : (N, 1, S, S) or (N, S, S) float in [-1, 1]
    batch : tiles per FFT batch (bounds memory: ~ batch * 16 * S * S * 8 bytes; results do not depend on it)

    Returns
    -------
    (N, len(scattering_names(S))) float64, finite; identical on every call and machine (no randomness).
    """
    x = np.asarray(tiles, np.float32)
    x = x.reshape(x.shape[0], x.shape[-2], x.shape[-1])
    size = x.shape[-1]
    if len(x) == 0:
        return np.zeros((0, len(scattering_names(size))))
    out = [_batch(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).numpy() for i in range(0, len(x), batch)]
    return np.nan_to_num(np.concatenate(out).astype(np.float64))
