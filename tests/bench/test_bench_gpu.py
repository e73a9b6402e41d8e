"""bench/bench_gpu.py: the parts that need no GPU (one tiny CPU case runs the real worker path)."""

from __future__ import annotations

import json

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bg():
    return load_bench("bench_gpu")


def test_unknown_case_is_refused_in_one_line(bg, tmp_path, capsys):
    assert bg.main(["--device", "cpu", "--cases", "dcgan64-fp32,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_one_cpu_case_measures_steps_and_writes_table_and_plot(bg, tmp_path):
    argv = ["--device", "cpu", "--plan", "quick", "--cases", "dcgan64-bf16", "--seconds", "1", "--warmup", "0.5",
            "--out", str(tmp_path)]  # a short measuring window: the smoke of the real worker path
    assert bg.main(argv) == 0
    case = json.loads((tmp_path / "gpu.json").read_text())["cases"][0]
    assert case["processes_ok"] == 1 and case["errors"] == []
    assert case["steps_s_median"] > 0 and case["images_s_sum"] == pytest.approx(case["steps_s_sum"] * 64)
    assert "| dcgan64-bf16 |" in (tmp_path / "gpu.md").read_text()
    assert (tmp_path / "gpu.png").stat().st_size > 0
