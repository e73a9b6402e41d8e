"""What each trial leaves on disk: the driver writes params.json and result.json itself (Ray's CSV, pickle
and TensorBoard twins are off), straight into the storage's trial folder when the storage is a path, and
the trainable restarts from the newest of Ray's checkpoints in that folder when Ray's saved state lags it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from search.trials import append_result, collect_trials, pack, write_params


@dataclass
class FakeTrial:  # what the driver's file writer reads of ray.tune.experiment.Trial
    trial_id: str
    config: dict
    local_path: str  # Ray's staging folder on the driver
    path: str  # the trial's folder in the storage


def test_written_files_read_back_as_the_trial(tmp_path):
    d = tmp_path / "trial_a"  # not made yet: the first result makes it
    append_result(d, {**pack({"step": 10, "primary": 0.5, "loss_d": 1.0}), "trial_id": "a", "config": {"x": 1},
                      "np": np.float32(0.25)})
    append_result(d, {**pack({"step": 20, "primary": 0.4, "finished": 1}), "trial_id": "a"})
    write_params(d, {"train.steps": 20, "optim.lr_g": np.float64(1e-4)})
    (trial,) = collect_trials(tmp_path)
    assert trial.trial_id == "a" and trial.status == "finished" and trial.params["optim.lr_g"] == 1e-4
    assert trial.results[0]["loss_d"] == 1.0 and trial.results[0]["np"] == 0.25
    assert "config" not in json.loads((d / "result.json").read_text().splitlines()[0])  # it is in params.json


def test_the_driver_writes_into_the_storage_folder_or_the_staging_one(tmp_path):
    """A storage that is a path: into the trial's folder there (nothing in the staging folder Ray copies at
    every state save); an object store: into the staging folder, which Ray uploads."""
    from search.run import _TrialFiles

    trial = FakeTrial("a", {"x": 1}, str(tmp_path / "staging" / "trial_a"), str(tmp_path / "storage" / "trial_a"))
    for direct, where, other in ((True, trial.path, trial.local_path), (False, trial.local_path, trial.path)):
        cb = _TrialFiles(direct=direct)
        cb.on_trial_start(0, [trial], trial)
        cb.on_trial_result(0, [trial], trial, {"step": 1, "primary": 0.5, "config": {"x": 1}})
        (trial_rec,) = collect_trials(where.rsplit("/", 1)[0])
        assert trial_rec.params == {"x": 1} and trial_rec.step == 1
        if direct:
            assert not (tmp_path / "staging").exists()
    assert sorted(p.name for p in (tmp_path / "storage" / "trial_a").iterdir()) == ["params.json", "result.json"]


def test_the_newest_stored_checkpoint_of_this_trial_is_found(tmp_path):
    """Ray's checkpoints in the trial folder, newest first; a half-written one (no step.json yet) or one
    another trial wrote is passed over."""
    from search.trainable import _newest_stored

    def ckpt(name, step, writer="t1", lineage=()):
        d = tmp_path / name
        d.mkdir()
        (d / "checkpoint.pt").write_bytes(b"x")
        if step is not None:
            (d / "step.json").write_text(json.dumps({"step": step, "trial_id": writer, "lineage": list(lineage)}))

    assert _newest_stored(tmp_path, "t1") is None
    ckpt("checkpoint_000000", 10, lineage=[{"parent": "t0", "step": 5}])
    ckpt("checkpoint_000001", 20)
    ckpt("checkpoint_000002", None)  # being written
    ckpt("checkpoint_000003", 40, writer="other")
    path, step, lineage = _newest_stored(tmp_path, "t1")
    assert (path.parent.name, step, lineage) == ("checkpoint_000001", 20, [])


def _ray_checkpoint(folder, step, writer="t1"):
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"x")
    (folder / "step.json").write_text(json.dumps({"step": step, "trial_id": writer}))
    from ray import tune

    return tune.Checkpoint(str(folder))


def test_a_restored_checkpoint_that_is_gone_or_empty_is_passed_over_for_the_newest_other(tmp_path, caplog):
    """A driver stopped between Ray removing a checkpoint and saving its state can restore a trial from a
    checkpoint that is gone (or that the resume made again, empty): the trial continues from the newest
    checkpoint of its own still in its folder, with one warning, instead of failing."""
    from ray import tune

    from search.trainable import _resume_path

    trial = tmp_path / "trial_a"
    gone = tune.Checkpoint(str(trial / "checkpoint_000001"))
    _ray_checkpoint(trial / "checkpoint_000002", 30)
    with caplog.at_level("WARNING", logger="search.trainable"):
        path, step, _ = _resume_path(trial, gone, "t1")
    assert (path.parent.name, step) == ("checkpoint_000002", 30)
    assert "checkpoint_000001 is gone" in caplog.text
    (trial / "checkpoint_000001").mkdir()  # made again, empty
    path, step, _ = _resume_path(trial, gone, "t1")
    assert (path.parent.name, step) == ("checkpoint_000002", 30)
    # the restored checkpoint, when it is there, is what the trial continues from (copied beside it)
    path, step, _ = _resume_path(trial, tune.Checkpoint(str(trial / "checkpoint_000002")), "t1")
    assert (path.name, step) == ("resume.pt", 30)


def test_the_checkpoints_rays_state_names_and_a_stopped_driver_removed_are_made_again_empty(tmp_path, s3_env,
                                                                                             s3_server):
    """Ray removes each one again at the trial's next checkpoint: missing, that fails with a traceback."""
    import pyarrow.fs as pafs
    from ray import tune

    from search.run import _drop_still_empty, _remake_removed_checkpoints

    kept = _ray_checkpoint(tmp_path / "trial_a" / "checkpoint_000002", 30)
    gone = tune.Checkpoint(str(tmp_path / "trial_a" / "checkpoint_000001"))
    fs = s3_server["fs"]
    fs.create_dir("mitogan/remake/trial_b/checkpoint_000004")
    fs.create_dir("mitogan/remake/trial_b/checkpoint_000005")
    fs.delete_dir("mitogan/remake/trial_b/checkpoint_000004")
    on_s3 = [tune.Checkpoint(f"mitogan/remake/trial_b/checkpoint_00000{i}", filesystem=fs) for i in (4, 5)]
    ended = tune.Checkpoint(str(tmp_path / "trial_d" / "checkpoint_000003"))
    results = [tune.Result(metrics={}, checkpoint=kept, error=None, path=str(tmp_path / "trial_a"),
                           best_checkpoints=[(gone, {}), (kept, {})]),
               tune.Result(metrics={}, checkpoint=on_s3[1], error=None, path="mitogan/remake/trial_b",
                           best_checkpoints=[(c, {}) for c in on_s3]),
               tune.Result(metrics={}, checkpoint=None, error=None, path=str(tmp_path / "trial_c")),
               # an ended trial checkpoints no more: Ray will not remove anything of it
               tune.Result(metrics={"done": True}, checkpoint=ended, error=None, path=str(tmp_path / "trial_d"),
                           best_checkpoints=[(ended, {})])]
    made = _remake_removed_checkpoints(results)
    assert sorted(path for _, path in made) == sorted([gone.path, on_s3[0].path])
    assert (tmp_path / "trial_a" / "checkpoint_000001").is_dir() and not (tmp_path / "trial_d").exists()
    assert sorted(p.name for p in (tmp_path / "trial_a" / "checkpoint_000002").iterdir()) == ["checkpoint.pt",
                                                                                              "step.json"]
    assert fs.get_file_info("mitogan/remake/trial_b/checkpoint_000004").type == pafs.FileType.Directory
    assert _remake_removed_checkpoints(results) == []  # nothing is missing now

    # after the search: those Ray did not remove (their trial ended without checkpointing again) go; a folder
    # that holds something (a checkpoint written there since) stays
    (tmp_path / "trial_a" / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x")
    _drop_still_empty(made)
    assert (tmp_path / "trial_a" / "checkpoint_000001" / "checkpoint.pt").is_file()
    assert fs.get_file_info("mitogan/remake/trial_b/checkpoint_000004").type == pafs.FileType.NotFound
    assert fs.get_file_info("mitogan/remake/trial_b/checkpoint_000005").type == pafs.FileType.Directory
