"""`mitogan search` options reach SearchOptions (no Ray run), its help is plain text with real defaults,
and --dashboard starts Ray's dashboard on loopback only (slow: starts a local Ray)."""

from __future__ import annotations

import pytest


def parsed_options(monkeypatch, argv):
    import search.run
    from mitogan.cli import main

    seen = {}

    def fake_run_search(opts):
        seen["opts"] = opts
        return __import__("pathlib").Path("/nonexistent")

    monkeypatch.setattr(search.run, "run_search", fake_run_search)
    assert main(["search", *argv]) == 0
    return seen["opts"]


def test_quiet_verbose_and_dashboard_flags(monkeypatch):
    opts = parsed_options(monkeypatch, [])
    assert opts.progress and not opts.verbose and not opts.dashboard  # progress on, Ray quiet, no dashboard
    opts = parsed_options(monkeypatch, ["-q", "-v", "--dashboard"])
    assert not opts.progress and opts.verbose and opts.dashboard


def test_help_is_plain_text_with_real_defaults(capsys):
    from mitogan.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "``" not in text
    assert "(default: 8)" in text and "WANDB_MODE" in text and "--dashboard" in text


@pytest.mark.slow
def test_dashboard_listens_on_loopback_and_its_url_is_printed(capsys):
    import urllib.request

    import ray

    from search.run import _init_ray

    _init_ray(None, dashboard=True)
    try:
        line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Ray dashboard:")][0]
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        try:
            status = urllib.request.urlopen(url, timeout=20).status
        except urllib.error.HTTPError as e:  # token auth may answer 401: still the dashboard, listening
            status = e.code
        assert status in (200, 401)
    finally:
        ray.shutdown()
