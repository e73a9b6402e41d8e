"""What a trial hands Ray: only the numbers Ray needs at the top level, the rest packed in one JSON string
that every reader expands back (search.trials.pack / expand)."""

import json
import math

from ray.tune.experiment import Trial

from search.trials import (PAYLOAD, RAY_KEYS, collect_trials, complete_results, expand, pack, ran_to_end,
                           stop_reason_of)

RESULT = {"step": 40, "primary": 0.31, "fidelity": 0.2, "diversity_gap": 0.11, "loss_d": -1.5, "finished": 0,
          "steps_total": 100, "nonfinite": False, "wasserstein": math.nan, "stop_reason": "", "objective": "realism_gap",
          "samples_png": "samples/step_000040.png", "samples_png_bytes": b"\x89PNG"}


def test_pack_keeps_rays_numbers_and_strings_on_top_and_expand_gives_the_rest_back():
    packed = pack(RESULT)
    numbers = {k for k, v in packed.items() if isinstance(v, (int, float))}
    assert numbers == set(RAY_KEYS) == {"step", "primary"}
    # strings and the sample grid's bytes (the W&B logger takes those out) stay where they were
    assert packed["stop_reason"] == "" and packed["samples_png_bytes"] == b"\x89PNG"
    assert isinstance(packed[PAYLOAD], str)
    back = expand(packed)
    assert math.isnan(back.pop("wasserstein")) and set(back) == set(RESULT) - {"wasserstein"}
    assert back == {k: v for k, v in RESULT.items() if k != "wasserstein"}
    assert expand({"step": 3}) == {"step": 3}  # results written before packing read as they were


def test_rays_trial_tracks_statistics_of_the_top_level_numbers_only():
    """Ray keeps max/min/mean/last-n of every top-level number of every result (in memory and in the
    experiment state): packed, the trainer's scalars are not among them."""
    plain, packed = Trial("__fake", config={}, stub=True), Trial("__fake", config={}, stub=True)
    for step in (10, 20, 30):
        r = {k: v for k, v in RESULT.items() if k != "samples_png_bytes"}
        r["step"] = step
        plain.update_last_result({**r, "training_iteration": step // 10})  # Ray adds its own keys
        packed.update_last_result({**pack(r), "training_iteration": step // 10})
    assert {"loss_d", "fidelity", "steps_total"} <= set(plain.run_metadata.metric_analysis)
    assert set(packed.run_metadata.metric_analysis) == {"step", "primary", "training_iteration"}
    assert len(packed.get_json_state()[1]) < len(plain.get_json_state()[1]) / 2


def test_the_rules_and_the_readers_see_packed_results_as_plain_ones(tmp_path):
    ended = {**RESULT, "step": 100, "finished": 1}
    asha = {**RESULT, "step": 40}
    for r in (ended, asha):
        r.pop("samples_png_bytes")
        assert ran_to_end(pack(r)) == ran_to_end(r) and stop_reason_of(pack(r)) == stop_reason_of(r)
    assert ran_to_end(pack(ended)) and stop_reason_of(pack(asha)) == "asha"
    d = tmp_path / "trial_a"
    d.mkdir()
    (d / "params.json").write_text(json.dumps({"train.steps": 100}))
    (d / "result.json").write_text("".join(json.dumps(pack(r)) + "\n" for r in (asha, ended)))
    (trial,) = collect_trials(tmp_path)
    assert trial.status == "finished" and trial.last["loss_d"] == -1.5 and trial.results[0]["fidelity"] == 0.2


def test_a_result_file_that_stops_short_of_rays_saved_state_gets_the_last_result_back(tmp_path):
    """A driver killed while it uploaded Ray's state can leave the state knowing a trial ended while the
    trial's result.json lacks the final result (search.run._complete_results): it is appended once, after
    the rows that are there; a last line cut short is dropped, a whole one missing only its newline kept."""
    plain = {k: v for k, v in RESULT.items() if k != "samples_png_bytes"}
    rows = [{**pack({**plain, "step": 10 * i}), "training_iteration": i} for i in (1, 2, 3)]
    final = {**pack({**plain, "step": 30, "finished": 1}), "training_iteration": 4,
             "config": {"train.steps": 30}}
    d = tmp_path / "trial_a"
    d.mkdir()
    (d / "params.json").write_text(json.dumps({"train.steps": 30}))
    lines = [json.dumps(r) for r in rows]
    for written in ("\n".join(lines) + "\n", "\n".join(lines), "\n".join(lines) + '\n{"step": 4'):
        (d / "result.json").write_text(written)
        assert complete_results(d, final)
        (trial,) = collect_trials(tmp_path)
        assert [r["training_iteration"] for r in trial.results] == [1, 2, 3, 4]
        assert trial.last["finished"] == 1 and trial.status == "finished" and "config" not in trial.last
        assert not complete_results(d, final)  # once: the file holds that iteration now
        assert len((d / "result.json").read_text().splitlines()) == 4
    assert not complete_results(d, {**final, "training_iteration": 2})  # Ray's state older than the file
    assert not complete_results(tmp_path / "trial_b", final)  # no file: not a trial of this search
