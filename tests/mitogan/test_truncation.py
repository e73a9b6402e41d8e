"""The truncation factor a finished search trial keeps: the best judged_gap against held-out tiles (the real
in-training evaluator and classifier judge), never a factor whose samples are flagged as copying, and judged again
on other latents."""

import numpy as np
import pytest
import torch
from torch import nn

from mitogan.metrics import InTrainingEvaluator
from mitogan.metrics.proof import videos_to_tiles
from mitogan.truncation import choose_truncation, judge_generator, judge_latents, truncation_grid

LATENT = 16


def _movies(seeds):
    from mitogan.simulate import SimParams, simulate_video

    return videos_to_tiles([simulate_video(SimParams(size=64, frames=6), s)[0] for s in seeds], 32)


@pytest.fixture(scope="module")
def evaluator():
    return InTrainingEvaluator(_movies(range(8)), n_fake=128, cache=False)


@pytest.fixture(scope="module")
def honest():
    """Tiles of 8 other simulated movies: what a good generator draws."""
    return torch.as_tensor(_movies(range(200, 208)).tiles)


class Bank(nn.Module):
    """A generator over a bank of honest tiles: the latent's direction picks the tile (the same tile at every
    factor), its length how much noise replaces it. ``damage_far``: long latents (the prior's tails) draw noise,
    as a generator's worst samples sit in the tails; else short ones do."""

    def __init__(self, tiles: torch.Tensor, damage_far: bool):
        super().__init__()
        self.register_buffer("tiles", tiles)
        self.register_buffer("pick", torch.randn(LATENT, len(tiles), generator=torch.Generator().manual_seed(3)))
        self.damage_far = damage_far

    def forward(self, z):
        r = z.norm(dim=1) / LATENT ** 0.5  # ~1 for the prior, ~psi after truncation
        w = ((r - 0.8) if self.damage_far else (0.95 - r)).mul(4).clamp(0, 1)[:, None, None, None]
        noise = torch.rand(len(z), *self.tiles.shape[1:], generator=torch.Generator().manual_seed(5)) * 2 - 1
        return (1 - w) * self.tiles[(z @ self.pick).argmax(1)] + w * noise


def _latents(n=512):
    return torch.randn(n, LATENT, generator=torch.Generator().manual_seed(11))


def test_the_grid_runs_from_one_down_to_the_floor():
    assert truncation_grid(1.0) == (1.0,)
    assert truncation_grid(0.7) == (1.0, 0.9, 0.8, 0.7)
    assert truncation_grid(0.75) == (1.0, 0.9, 0.8)  # never below the floor
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match="truncation floor"):
            truncation_grid(bad)


def test_keeps_the_factor_that_leaves_out_a_generators_bad_tails(evaluator, honest):
    choice = choose_truncation(evaluator, Bank(honest, damage_far=True), _latents(), floor=0.7)
    assert choice["truncation"] == 0.7 and choice["truncation_by"] == "judged"
    scores = [choice[f"truncation_judged_{p}"] for p in (100, 90, 80, 70)]
    assert scores == sorted(scores, reverse=True), scores  # each step in removes more of the damaged tails


def test_keeps_one_when_truncation_only_hurts(evaluator, honest):
    choice = choose_truncation(evaluator, Bank(honest, damage_far=False), _latents(), floor=0.7)
    assert choice["truncation"] == 1.0
    assert choice["truncation_judged_100"] < choice["truncation_judged_70"]


class Scripted:
    """An evaluator whose primary falls with the factor (read from the images, which ``Fill`` sets to the latents'
    mean length), which flags the samples below ``flag_below`` as copying, and whose classifier judge sees nothing
    (the same gap for every set); it records the image means it judged."""

    n_fake = 64

    def __init__(self, flag_below: float):
        self.flag_below, self.calls, self.judged = flag_below, 0, []

    def __call__(self, fake):
        self.calls += 1
        psi = float(np.mean(fake))
        return {"primary": psi, "copying": float(psi < self.flag_below), "copy_share": 0.5}

    def judge(self, fake):
        self.judged.append(float(np.mean(fake)))
        return {"c2st_accuracy": 0.9, "c2st_gap": 0.2}


class Fill(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z):
        r = z.norm(dim=1) / LATENT ** 0.5
        return (self.scale * r)[:, None, None, None].expand(len(z), 1, 8, 8)


def test_never_keeps_a_factor_whose_samples_are_flagged_as_copying():
    ev = Scripted(flag_below=0.85)  # the primary is best at 0.7, but 0.8 and 0.7 draw copies
    choice = choose_truncation(ev, Fill(), _latents(256), floor=0.7)
    assert choice["truncation"] == 0.9 and ev.calls == 4 * 2  # four factors, two chunks of 64 each
    assert len(ev.judged) == 2  # the classifier judged only the factors that could be kept
    assert "truncation_judged_80" not in choice and "truncation_judged_70" not in choice
    everything = choose_truncation(Scripted(flag_below=2.0), Fill(), _latents(256), floor=0.7)
    assert everything["truncation"] == 1.0  # untruncated is always allowed: the trial's own copy test judges it


def test_the_factor_kept_is_judged_again_on_other_latents():
    ev = Scripted(flag_below=0.0)
    out = judge_generator(ev, Fill(), n=256, latent_dim=LATENT, seed=3, floor=0.8)
    assert out["truncation"] == 0.8 and len(ev.judged) == 3 + 1  # three factors, then the one kept again
    assert out["truncation_primary"] != out["truncation_judged_80"]  # not the minimum it was chosen on
    fresh = judge_latents(256, LATENT, 3, fresh=True) * 0.8  # the primary: two chunks of 64 of them
    with torch.no_grad():
        assert out["truncation_primary"] == pytest.approx(float(Fill()(fresh[:128]).mean()))
        assert ev.judged[-1] == pytest.approx(float(Fill()(fresh).mean()))  # the classifier: all of them
    assert out["c2st_accuracy"] == 0.9 and out["truncation_copy_share"] == 0.5
    off = Scripted(flag_below=0.0)
    assert judge_generator(off, Fill(), n=256, latent_dim=LATENT, seed=3, floor=1.0) == {"c2st_accuracy": 0.9,
                                                                                          "c2st_gap": 0.2}
    assert off.calls == 0 and len(off.judged) == 1  # floor 1: the judge alone, as before the choice existed


class FlagsCall(Scripted):
    """``Scripted``, but the calls numbered in ``flagged`` (from 1) are flagged as copying, whatever the images."""

    def __init__(self, flagged):
        super().__init__(flag_below=0.0)
        self.flagged = set(flagged)

    def __call__(self, fake):
        out = super().__call__(fake)
        return {**out, "copying": float(self.calls in self.flagged)}


def test_a_factor_flagged_on_the_fresh_latents_is_not_kept():
    # calls 1-2: psi 1, 3-4: psi 0.9 (kept: the lower primary), 5-6: 0.9 again on fresh latents, flagged at call 5
    ev = FlagsCall(flagged={5})
    out = judge_generator(ev, Fill(), n=128, latent_dim=LATENT, seed=3, floor=0.9)
    assert out["truncation"] == 1.0 and out["truncation_flagged"] == 0.9 and ev.calls == 8  # 1 on fresh: 7-8
    with torch.no_grad():  # the numbers reported are those of psi 1 on the fresh latents
        assert out["truncation_primary"] == pytest.approx(float(Fill()(judge_latents(128, LATENT, 3, fresh=True)).mean()))
    assert judge_generator(FlagsCall(flagged={6}), Fill(), n=128, latent_dim=LATENT, seed=3, floor=0.9)["truncation"] == 1.0
    assert judge_generator(FlagsCall(flagged=set()), Fill(), n=128, latent_dim=LATENT, seed=3, floor=0.9)["truncation"] == 0.9


def test_non_finite_samples_choose_nothing():
    gen = Fill()
    with torch.no_grad():
        gen.scale.fill_(float("nan"))
    assert choose_truncation(Scripted(0.0), gen, _latents(128), floor=0.7) == {}
    assert judge_generator(Scripted(0.0), gen, n=128, latent_dim=LATENT, seed=0, floor=0.7) == {}
