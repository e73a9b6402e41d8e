"""Shared fixtures. ``shared_data`` is the real data beside the checkout (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MITOGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


# The slow suite's files go whole to CI's two test processes (`--dist loadfile`) in collection order
# (`--no-loadscope-reorder`: xdist's own order is by the number of tests in a file, which leaves the long one-test
# files, the shared-data proof among them, for the end). The longest files go first, so that neither process is
# left alone with a long file at the end. Seconds of each file's slow tests in CI (the sum of the tests that
# `--durations=25` listed, stop 38, both processes busy; the warm/cold test since cut to 4 trials).
SLOW_FILE_SECONDS = {
    "tests/search/test_resume.py": 373, "tests/mitogan/test_metrics_proof.py": 352,
    "tests/search/test_schedulers.py": 268, "tests/search/test_lost_worker.py": 262,
    "tests/mitogan/test_metrics_proof_shared.py": 192, "tests/search/test_trainable.py": 150,
    "tests/search/test_search_cli.py": 115, "tests/mitogan/test_metrics_memorising.py": 90,
    "tests/cluster/test_local_cluster.py": 84, "tests/search/test_search_e2e.py": 82,
    "tests/mitogan/test_learning.py": 73, "tests/search/test_fitsim.py": 68, "tests/search/test_search_asha.py": 67,
    "tests/search/test_cluster_images.py": 64, "tests/search/test_stops.py": 53, "tests/search/test_cluster.py": 50,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -SLOW_FILE_SECONDS.get(item.nodeid.split("::")[0], 0))  # stable: files keep their order


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
