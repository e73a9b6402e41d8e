"""W&B logging: offline runs land on disk with metrics and images; a W&B failure never raises."""

import numpy as np

from mitogan.tracking import WandbRun, flush_all, wandb_mode
from tests.search.wandb_records import read_run


def test_offline_run_has_metrics_images_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    run = WandbRun(name="t", group="g", config={"model.arch": "dcgan"}, dir=tmp_path)
    assert run.active
    run.log({"step": 10, "loss_d": 1.5, "samples": np.zeros((4, 1, 8, 8), np.float32), "checkpoint": "/x"}, step=10)
    run.summary({"stop_reason": "collapse"})
    run.finish()
    flush_all()  # finish() can return before the offline .wandb file is complete
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rec = read_run(files[0])
    assert rec["config"]["model.arch"] == "dcgan" and rec["run"]["group"] == "g"
    assert rec["history"][0]["loss_d"] == 1.5
    assert rec["history"][0]["samples/_type"] == "image-file"  # the sample grid went in as an image
    assert "checkpoint" not in rec["history"][0]  # strings are not time series
    assert rec["summary"]["stop_reason"] == "collapse"
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/images/*.png"))


def test_failure_is_a_warning_not_an_exception(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = WandbRun(name="t", dir=blocker / "sub")  # cannot create the run folder
    assert not run.active
    run.log({"loss_d": 1.0}, step=1)  # no-ops, no exception
    run.finish()
    flush_all()  # finish() can return before the offline .wandb file is complete
    assert "W&B init failed" in caplog.text


def test_mode_offline_unless_asked(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
