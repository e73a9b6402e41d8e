"""bench/bench_peers.py: the parts that need no venv, no training and no network."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.bench import REPO, load_bench


@pytest.fixture(scope="module")
def bp():
    mod = load_bench("bench_peers")
    yield mod
    sys.modules.pop("bench_peers", None)


def test_defaults_are_the_cpu_peers_at_the_issue_budget(bp):
    a = bp.parse_args([])
    # 20 min each, as issue 20 suggests; the GPU-only peers are not in a CPU run
    assert (a.budget_min, a.device, a.peers) == (20.0, "cpu", list(bp.CPU_PEERS))
    assert bp.parse_args(["--device", "cuda"]).peers == list(bp.CPU_PEERS + bp.CUDA_PEERS)


@pytest.mark.parametrize("argv, field", [
    (["--peers", "lightweight-gan"], "--peers"),  # asserts a GPU at import: refused without --device cuda
    (["--peers", "stylegan2,ddpm"], "--peers"),
    (["--peers", "biggan"], "--peers"),
    (["--device", "tpu"], "--device"),
    (["--budget-min", "0"], "--budget-min"),
    (["--budget-min", "nan"], "--budget-min"),
    (["--n", "10"], "--n"),
])
def test_bad_input_is_one_line_naming_the_field(bp, capsys, argv, field):
    assert bp.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench_peers: {field}") and "\n" not in err


def test_device_cuda_without_a_gpu_stops_before_anything_runs(bp, capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    assert bp.main(["--device", "cuda", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()  # nothing preprocessed or written


def test_constraints_hold_torch_2_13_and_its_torchvision():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "bench" / "peers" / "constraints.txt").read_text().splitlines()]
    pins = {ln.split("==")[0]: ln.split("==")[1] for ln in lines if "==" in ln}
    assert pins == {"torch": "2.13.0", "torchvision": "0.28.0"}


@pytest.mark.parametrize("argv", [["lightweight-gan"], ["stylegan2", "--device", "cpu"], ["nope"],
                                  ["ddpm", "--device", "gpu"]])
def test_setup_refuses_before_making_a_venv(argv):
    out = subprocess.run(["bash", str(REPO / "bench" / "peers" / "setup.sh"), *argv], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("setup.sh: ")
    assert not (REPO / "bench" / f".venv-{argv[0]}").exists() or argv[0] == "ddpm"


def test_the_search_budget_leaves_room_for_the_trial_running_when_it_is_spent(bp):
    assert bp.search_budget_s(20, 1.5) == 1110  # (20 - 1.5) min
    assert bp.search_budget_s(1, 1.5) == 90  # never below one trial


def _results():
    scores = {"realism_gap": 0.1234, "c2st_accuracy": 0.97, "c2st_accuracy_sd": 0.01, "c2st_baseline": 0.86,
              "c2st_baseline_sd": 0.02, "copy_share": 0.0, "memorisation_ratio": 1.41}
    return {"conditions": {"budget_min": 5.0, "threads": 1, "n": 1000, "tile_px": 32, "load_start": "1.0 / 1.0 / 1.0",
                           "load_end": "2.0 / 2.0 / 2.0", "date": "2026-12-04 11:00 UTC",
                           "split": {"split": "videos", "n_train": 2000, "n_heldout": 750}},
            "peers": {"ddpm": {"status": "ok", "setting": "Unet dim 16", "steps": 321, "train_s": 300.2,
                               "cpu_s": 290.0, "sample_s": 95.0, "scores": scores},
                      "fastgan": {"status": "failed", "reason": "failed: RuntimeError: mitogan train exited with 1"},
                      "stylegan2": {"status": "not run", "reason": "needs a CUDA GPU: not run here"}}}


def test_table_has_a_row_per_peer_with_its_numbers_or_why_not(bp):
    md = bp.render_table(_results())
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 3
    assert "| 321 | 300 / 290 | 95 | 0.123 | 0.970 ± 0.010 | 0.860 ± 0.020 | 0.000 | 1.41 |" in rows[0]
    assert "mitogan train exited with 1" in rows[1]
    assert "needs a CUDA GPU" in rows[2]
    assert "Budget 5 min" in md and "750 held-out" in md  # the conditions are said under the table


def test_generated_grids_are_cut_back_into_tiles(bp, tmp_path):
    from PIL import Image

    # a 2 x 2 grid with 2 px borders, as torchvision's save_image writes it; tile i is filled with 40 * (i + 1)
    grid = np.zeros((2 + 2 * 10, 2 + 2 * 10), np.uint8)
    for i in range(4):
        r, c = divmod(i, 2)
        grid[2 + 10 * r: 10 * r + 10, 2 + 10 * c: 10 * c + 10] = 40 * (i + 1)
    Image.fromarray(grid).save(tmp_path / "g-ema.png")
    x = bp.read_generated([tmp_path / "g-ema.png"], 8, n=3)
    assert x.shape == (3, 1, 8, 8)  # n caps the count
    np.testing.assert_allclose(x[:, 0, 0, 0], np.array([40, 80, 120]) / 127.5 - 1)


def test_pngs_and_grid_from_tiles(bp, tmp_path):
    tiles = np.linspace(-1, 1, 5 * 16 * 16, dtype=np.float32).reshape(5, 1, 16, 16)
    folder = bp.write_pngs(tiles, tmp_path / "pngs")
    back = bp.read_generated(sorted(folder.glob("*.png")), 16, n=5, pad=0)
    np.testing.assert_allclose(back, tiles, atol=1 / 127.5)  # 8-bit rounding only
    np.save(tmp_path / "f.npy", tiles)
    bp.save_grid(tmp_path / "f.npy", tmp_path / "grid.png", k=2)
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (33, 33)  # 2 tiles of 16 px and a 1 px gap


def test_results_json_round_trips_into_the_same_table(bp, tmp_path):
    a = bp.Args(out=tmp_path)
    bp.write_results(a, _results())
    again = json.loads((tmp_path / "peers.json").read_text())
    assert (tmp_path / "peers.md").read_text() == bp.render_table(again)


def test_the_budget_stops_a_peer_with_sigterm_once_its_marker_appears(bp, tmp_path):
    marker = tmp_path / "data.json"
    # the peer writes its marker, then would train for ever: the budget (0.5 s after the marker) stops it
    step = bp._run(["bash", "-c", f"touch {marker}; exec sleep 60"], tmp_path / "log", timeout_s=0.5,
                   clock_from=marker)
    assert step["stopped_at_budget"] and step["rc"] == -15  # SIGTERM, which MitoGAN turns into save-and-stop
    # a peer that exits before writing its marker is not waited for
    step = bp._run(["bash", "-c", "exit 3"], tmp_path / "log", timeout_s=60, clock_from=tmp_path / "never")
    assert (step["rc"], step["stopped_at_budget"]) == (3, False)


def test_rerunning_one_peer_keeps_the_others_of_the_same_budget(bp, tmp_path):
    bp.write_results(bp.Args(out=tmp_path, budget_min=5.0, n=1000, threads=1), _results())
    again = bp.Args(out=tmp_path, budget_min=5.0, n=1000, threads=1, peers=["ddpm"])
    assert set(bp._earlier_peers(again)) == {"fastgan"}  # ddpm is rerun; the not-run GPU rows are rewritten
    assert bp._earlier_peers(bp.Args(out=tmp_path, budget_min=20.0, peers=["ddpm"])) == {}  # another budget


def test_scoring_stage_takes_the_gpu_peers_and_needs_the_train_stage_first(bp, tmp_path, capsys):
    # scoring is CPU work: the GPU-only peers' tiles, trained elsewhere, are scored without --device cuda
    assert bp.parse_args(["--stage", "score", "--peers", "lightweight-gan"]).peers == ["lightweight-gan"]
    assert bp.main(["--stage", "score", "--work", str(tmp_path)]) == 2
    assert "run --stage train first" in capsys.readouterr().err


def test_a_gpu_peer_without_a_trained_checkpoint_is_not_scored(bp, tmp_path):
    a = bp.parse_args(["--stage", "score", "--work", str(tmp_path), "--out", str(tmp_path / "out")])
    rec = {"status": "trained", "fake": "x.npy", "steps": 0, "train_s": 90.0, "save_every": 25}  # model_0: the initial weights
    got = bp.score_peer(a, "lightweight-gan", tmp_path / "tiles.npz", dict(rec))
    assert got["status"] == "failed" and "untrained weights" in got["reason"]


def test_single_unpadded_images_are_read_whole(bp, tmp_path):
    from PIL import Image

    img = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)  # torchvision saves a batch of one without a border
    Image.fromarray(img).save(tmp_path / "generated-1-ema.png")
    got = bp.read_generated([tmp_path / "generated-1-ema.png"], 32, 10)
    assert got.shape == (1, 1, 32, 32)
    assert np.abs(got[0, 0] - (img / 127.5 - 1)).max() < 1e-6, got[0, 0, 0, :4]
