"""One storage abstraction for a search's own files: a local folder (followed by the umask) or an object
store (moto's S3 server on 127.0.0.1), names that stay inside --storage, and the Optuna journal's local
POSIX copy kept in step with the bucket (the longer, append-only copy wins)."""

from __future__ import annotations

import os

import pytest

from mitogan.errors import MitoganError
from search.storage import SearchStore, validate_name


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", ".hidden", "-x", "", "a" * 129, "a\nb", "a b"])
def test_names_are_one_folder_name(name):
    with pytest.raises(MitoganError, match="--name"):
        validate_name(name)


def test_local_storage_writes_in_the_search_folder_with_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store = SearchStore(str(tmp_path / "runs"), "s1")
        assert not store.exists() and store.read_json("search.json") is None
        store.write_json("search.json", {"a": 1})
        store.upload("search.json")  # a no-op here
    finally:
        os.umask(old)
    assert store.local == tmp_path / "runs" / "s1" and store.uri == str(store.local)
    assert store.exists() and store.read_json("search.json") == {"a": 1}
    assert (store.local / "search.json").stat().st_mode & 0o777 == 0o644
    (store.local / "bad.json").write_text("{torn")
    with pytest.raises(MitoganError, match="bad.json: not valid JSON"):
        store.read_json("bad.json")


def test_an_object_store_gets_every_file_and_no_local_s3_folder(s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = SearchStore("s3://mitogan/unit", "s1")
    assert store.remote and store.uri == "s3://mitogan/unit/s1" and not store.exists()
    store.write_json("search.json", {"a": 1})
    (store.local / "report").mkdir(parents=True)
    (store.local / "report" / "index.html").write_text("<html>")
    store.upload("report")
    assert not (tmp_path / "s3:").exists()
    again = SearchStore("s3://mitogan/unit", "s1")
    assert again.exists() and again.exists("report/index.html") and again.read_json("search.json") == {"a": 1}

    # the journal: a fresh machine downloads it; a longer local copy (appended after the last upload) stays
    store.journal.write_text("1\n2\n")
    store.upload("optuna.log")
    store.journal.unlink()
    store.pull_journal()
    assert store.journal.read_text() == "1\n2\n"
    store.journal.write_text("1\n2\n3\n")
    store.pull_journal()
    assert store.journal.read_text() == "1\n2\n3\n"


def test_an_unreachable_object_store_is_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(MitoganError) as e:
        SearchStore("s3://nobucket/x", "s1").exists()
    assert "\n" not in str(e.value)
