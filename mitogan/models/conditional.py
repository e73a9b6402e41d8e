"""Networks conditioned on the video a tile came from (``model.condition: source``).

Tiles of a lab's movies are not one population: movies from another microscope or lab differ in background,
noise and brightness, and a GAN trained on all of them drops the rarer kinds (measured on the shared data: the
movies with a noisy, unclipped background make 35 % of the training tiles; the story's DCGAN drew 7 % of its
tiles in that style, all near one template, and a small CNN told those from the real ones at 0.998).
A class-conditional GAN with a projection discriminator (Miyato & Koyama, ICLR 2018) judges each video's tiles
against that video's tiles, so a generator cannot pass by drawing one template for a whole kind of movie.

The generator stays a function of z alone, as everything downstream expects (synth, export, the metrics):
``ConditionedGenerator`` reads the class from z's first coordinate by the inverse CDF of the class prior (the
share of each video in the training tiles, a buffer saved with the weights), so z ~ N(0, I) draws each video in
its training proportion, and adds a learned embedding of the class to z. The discriminator's output is
``inner(x) + <E[y], pooled features of x>``; called without labels (explain, the exported discriminator) it uses
the prior's mean embedding.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConditionedGenerator", "ConditionedDiscriminator", "class_prior"]


def class_prior(labels, classes: int) -> torch.Tensor:
    """The share of each class 0..classes-1 among ``labels`` (a sequence of ints), as float32 (classes,)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long).flatten(), minlength=classes).float()
    if counts.numel() != classes or counts.sum() <= 0:
        raise ValueError(f"labels must lie in 0..{classes - 1} and be non-empty")
    return counts / counts.sum()


class ConditionedGenerator(nn.Module):
    """z (B, Z) → images: ``inner(z + E[y(z)])`` with the class y(z) read from z[:, 0] by the prior's inverse
    CDF. ``set_prior`` fixes the class shares before training; they travel in the state dict."""

    def __init__(self, inner: nn.Module, classes: int):
        super().__init__()
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        self.inner = inner
        self.config = {**inner.config, "classes": int(classes)}
        self.latent_dim = inner.latent_dim
        self.embed = nn.Embedding(classes, inner.latent_dim)
        nn.init.normal_(self.embed.weight)  # as large as z itself: the class is a real input, not a nudge
        self.register_buffer("cum", torch.linspace(1.0 / classes, 1.0, classes))  # uniform until set_prior

    def set_prior(self, prior: torch.Tensor) -> None:
        """The share of each class (classes,), summing to 1."""
        self.cum.copy_(torch.cumsum(torch.as_tensor(prior, dtype=torch.float32), 0).to(self.cum.device))

    def labels(self, z: torch.Tensor) -> torch.Tensor:
        """The class (B,) int64 each latent draws: the prior's bin holding Φ(z[:, 0])."""
        u = torch.special.ndtr(z[:, 0].float())
        return (u[:, None] > self.cum[None, :-1]).sum(dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(z + self.embed(self.labels(z)).to(z.dtype))


class ConditionedDiscriminator(nn.Module):
    """(images (B, 1, S, S), classes (B,) or None) → logits (B,): the inner discriminator's output plus the
    projection ``<E[y], φ(x)>`` of its last features φ (``inner.features``, pooled over space). The embedding
    starts at 0: the network starts as the unconditional one."""

    def __init__(self, inner: nn.Module, classes: int):
        super().__init__()
        self.inner = inner
        self.config = {**inner.config, "classes": int(classes)}
        self.embed = nn.Embedding(classes, inner.feature_channels)
        nn.init.zeros_(self.embed.weight)
        self.register_buffer("prior", torch.full((classes,), 1.0 / classes))

    def set_prior(self, prior: torch.Tensor) -> None:
        self.prior.copy_(torch.as_tensor(prior, dtype=torch.float32).to(self.prior.device))

    def _project(self, feats: torch.Tensor, y) -> torch.Tensor:
        phi = feats.sum(dim=(2, 3))  # (B, C)
        e = self.prior @ self.embed.weight if y is None else self.embed(y)  # (C,) or (B, C)
        return (phi * e.to(phi.dtype)).sum(dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.inner.features(x)
        return self.inner.logits(feats) + self._project(feats, y)

    def forward_real(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the inner discriminator's auxiliary loss on real images (``models.discriminate_real``)."""
        if getattr(self.inner, "forward_real", None) is None:
            return self(x, y), x.new_zeros(())
        feats, aux = self.inner.features_real(x)
        return self.inner.logits(feats) + self._project(feats, y), aux
