"""Tiny search spaces for the tests that run real searches: 32 px tiles, 8-wide networks, one CPU thread —
a few seconds per trial. Each test states only what it changes."""

from __future__ import annotations

# train.judge_samples 0: no classifier two-sample test per finished trial (test_search_e2e runs it once)
TINY_FIXED = {"preprocess.tile.size": 32, "preprocess.tile.scale": 0.5, "model.g_width": 8, "model.d_width": 8,
              "model.latent_dim": 16, "train.batch_size": 16, "train.threads": 1, "train.judge_samples": 0}


def tiny_space(name: str, fixed: dict, params: str) -> str:
    """The YAML of space ``name``: :data:`TINY_FIXED` with ``fixed`` on top, and ``params`` (YAML list items,
    one per line) as the sampled parameters."""
    lines = [f"name: {name}", "fixed:"] + [f"  {k}: {v}" for k, v in {**TINY_FIXED, **fixed}.items()]
    return "\n".join(lines + ["params:", params.strip("\n")]) + "\n"
