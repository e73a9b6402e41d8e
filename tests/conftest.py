"""Shared fixtures. ``shared_data`` is the real data beside the checkout (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MITOGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set MITOGAN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path_factory):
    # W&B never goes online from tests, and its temp folders land somewhere disposable.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
