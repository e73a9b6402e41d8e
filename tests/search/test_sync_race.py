"""Ray's harmless experiment-state copy race (``search.run._SyncRace``) reaches the terminal as one warning line,
not an error with a traceback; Ray's other errors pass unchanged. Through the real logger Ray uses."""

import logging

from search.run import watch_sync_race  # what a search's or a fit's driver calls

RAY_LOGGER = "ray.tune.execution.experiment_state"


def _log(error: Exception):
    watch_sync_race()
    logger = logging.getLogger(RAY_LOGGER)
    try:
        raise error
    except Exception:
        logger.error("Saving experiment state to storage at '/s/g' failed with exception: ", exc_info=True)


def test_a_copy_that_missed_a_renamed_temporary_file_is_one_warning_line(caplog):
    caplog.set_level(logging.WARNING, RAY_LOGGER)
    _log(FileNotFoundError("[Errno 2] Failed to open local file '/tmp/x/driver_artifacts/"
                           ".2efe97cc-tmp-searcher-state-2026-12-05_20-55-2.json'. Detail: [errno 2]"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    text = caplog.text
    assert "Traceback" not in text and "tmp-searcher-state" in text and "next has the new state" in text


def test_other_errors_of_ray_keep_their_traceback(caplog):
    caplog.set_level(logging.WARNING, RAY_LOGGER)
    _log(PermissionError("[Errno 13] Permission denied: '/s/g/experiment_state.json'"))
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None and "Traceback" in caplog.text
