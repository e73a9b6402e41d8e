"""`mitogan search --resume` and code planted in a search folder (no Ray run: every refusal comes before Ray
starts). Ray's `Tuner.restore` unpickles its experiment state, so a folder others can write to is refused
unless `--trust-storage`; MitoGAN's own searcher state is JSON and a pickle in its place is refused even then."""

from __future__ import annotations

import json
import os
import pickle

import pytest


class _Planted:
    """Creates ``path`` when unpickled: what someone with write access to a shared folder would plant."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def planted(tmp_path):
    """A stopped search ``r`` in ``tmp_path/runs`` (modes 0755/0644 whatever the umask) whose Ray state files
    are pickles that create ``tmp_path/ran`` when loaded."""
    search = tmp_path / "runs" / "r"
    search.mkdir(parents=True)
    (search / "search.json").write_text(json.dumps({"name": "r", "status": "interrupted", "options": {}}))
    for name in ("tuner.pkl", "experiment_state-2026-01-01_00-00-00.json"):
        (search / name).write_bytes(pickle.dumps(_Planted(tmp_path / "ran")))
    os.chmod(search, 0o755)
    for p in search.iterdir():
        os.chmod(p, 0o644)
    return search


def _resume(capsys, search, *extra):
    from mitogan.cli import main

    code = main(["search", "--resume", "r", "--storage", str(search.parent), *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("target, mode, why", [
    (".", 0o775, "group-writable"), (".", 0o777, "world-writable"), ("tuner.pkl", 0o666, "world-writable"),
    ("experiment_state-2026-01-01_00-00-00.json", 0o664, "group-writable")])
def test_a_folder_others_can_write_is_refused_before_ray_reads_it(planted, capsys, target, mode, why):
    path = planted / target
    os.chmod(path, mode)
    code, err = _resume(capsys, planted)
    # one line, exit 2, naming the path, the reason and both ways out
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(path.resolve()) in err and why in err and "chmod go-w" in err and "--trust-storage" in err
    assert not (planted.parent.parent / "ran").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_state_owned_by_another_user_is_refused(planted, capsys):
    os.chown(planted / "tuner.pkl", 12345, 12345)
    code, err = _resume(capsys, planted)
    assert code == 2 and "owned by another user" in err and "tuner.pkl" in err
    assert not (planted.parent.parent / "ran").exists()


def test_a_pickle_in_place_of_the_searcher_state_is_refused_even_with_trust_storage(planted, capsys):
    state = planted / "searcher-state-2026-01-01_00-00-00.pkl"
    state.write_bytes(pickle.dumps(_Planted(planted.parent.parent / "ran")))
    os.chmod(state, 0o644)
    for extra in ((), ("--trust-storage",)):
        code, err = _resume(capsys, planted, *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(state) in err and "never unpickles" in err
    assert not (planted.parent.parent / "ran").exists()


def test_an_object_store_needs_trust_storage(monkeypatch):
    from mitogan.errors import MitoganError
    from search.storage import SearchStore

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing is contacted
    store = SearchStore("s3://bucket/searches", "r")
    with pytest.raises(MitoganError, match="object store.*--trust-storage"):
        store.check_trusted(trust=False)
    store.check_trusted(trust=True)


def test_resume_help_states_the_trust_boundary(capsys):
    from mitogan.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust-storage" in text and "unpickles" in text and "object store" in text


def test_callback_states_reach_ray_as_json_text():
    # Ray pickles what a callback's get_state returns; MitoGAN's part of it is one JSON string
    import numpy as np

    from search import run
    from search.progress import SearchProgress

    first, restored = SearchProgress(3, "min", enabled=False), SearchProgress(3, "min", enabled=False)
    first.counts["finished"], first.best = 2, np.float32(0.5)
    try:
        run._LIVE["callbacks"] = [first]
        state = run._LiveCallbacks().get_state()
        assert set(state) == {"json"} and isinstance(state["json"], str)
        run._LIVE["callbacks"] = [restored]
        run._LiveCallbacks().set_state(pickle.loads(pickle.dumps(state)))
    finally:
        run._LIVE["callbacks"] = []
    assert restored.best == 0.5 and restored.counts["finished"] == 2


def test_an_object_store_search_with_a_planted_searcher_state(s3_env, s3_server, tmp_path, monkeypatch, capsys):
    from mitogan.cli import main

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path / "cache"))
    fs, base = s3_server["fs"], f"{s3_server['bucket']}/trust/r"
    with fs.open_output_stream(f"{base}/search.json") as f:
        f.write(json.dumps({"name": "r", "status": "interrupted", "options": {}}).encode())
    with fs.open_output_stream(f"{base}/searcher-state-2026-01-01_00-00-00.pkl") as f:
        f.write(pickle.dumps(_Planted(tmp_path / "ran")))
    storage = f"s3://{s3_server['bucket']}/trust"
    main(["search", "--resume", "r", "--storage", storage])
    assert "object store" in capsys.readouterr().err  # permissions cannot be checked there: no resume without
    code = main(["search", "--resume", "r", "--storage", storage, "--trust-storage"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "never unpickles" in err, err
    assert not (tmp_path / "ran").exists()
