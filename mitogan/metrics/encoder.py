"""Image features that need no download: a fixed, seeded random convolutional network.

Why random features (see docs/metrics.md): no weights to fetch (offline cluster nodes), nothing to train
(so no training budget and no risk of the encoder fitting one dataset's quirks), identical on every
machine for a given seed, and any tile size works (global pooling). Random ReLU networks keep a great deal
of image statistics (Naeem et al. 2020 show random embeddings rank generators sensibly on non-ImageNet
data); ImageNet-trained Inception features fit fluorescence poorly anyway.

Architecture: 4 stages of [3x3 conv (zero-mean random filters, unit norm) -> ReLU -> 2x2 average pool];
the feature vector is each stage's per-channel spatial mean and standard deviation (the std carries
texture: noise and blur move it a lot), 2 * (16 + 32 + 64 + 128) = 480 values.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ENCODER_VERSION", "RandomConvEncoder", "encode"]

ENCODER_VERSION = "randconv-v1"  # part of the real-feature cache key: bump when the features change
_WIDTHS = (16, 32, 64, 128)


class RandomConvEncoder:
    """Fixed random conv features. ``enc(tiles) -> (N, 480) float64``; same seed, same features."""

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = _WIDTHS):
        g = torch.Generator().manual_seed(int(seed))
        self.weights = []
        c_in = 1
        for c_out in widths:
            w = torch.randn(c_out, c_in, 3, 3, generator=g, dtype=torch.float32)
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)  # zero-mean: blind to a constant offset
            w = w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # unit norm: activations keep their scale
            self.weights.append(w)
            c_in = c_out
        self.dim = 2 * sum(widths)

    @torch.no_grad()
    def __call__(self, tiles: np.ndarray, batch: int = 500, progress: bool = False) -> np.ndarray:
        """(N, 1, S, S) float in [-1, 1] -> (N, dim) float64."""
        x = np.asarray(tiles, np.float32)
        x = x.reshape(x.shape[0], 1, x.shape[-2], x.shape[-1])
        starts = range(0, x.shape[0], batch)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="encoder", unit="batch")
        out = [self._features(torch.from_numpy(x[i:i + batch])) for i in starts]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.dim))

    def _features(self, h: torch.Tensor) -> np.ndarray:
        feats = []
        for k, w in enumerate(self.weights):
            h = torch.relu(torch.nn.functional.conv2d(h, w, padding=1))  # (b, c, s, s)
            feats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]  # (b, c) each
            if k < len(self.weights) - 1 and h.shape[-1] >= 2:
                h = torch.nn.functional.avg_pool2d(h, 2)  # (b, c, s/2, s/2)
        return torch.cat(feats, dim=1).numpy()


def encode(tiles: np.ndarray, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Random-conv features of ``tiles`` ((N, 1, S, S) in [-1, 1]) -> (N, 480) float64."""
    return RandomConvEncoder(seed)(tiles, progress=progress)
