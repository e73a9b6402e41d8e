"""Fixtures of the search tests: an S3-compatible object store on 127.0.0.1 (moto's server), started and
stopped by the tests, with its endpoint and test credentials in the environment (never a real account)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """``{"env": ..., "bucket": "mitogan"}``: a moto_server on a free loopback port with one bucket.
    The env holds AWS_ENDPOINT_URL and dummy keys for the processes a test starts."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        pytest.skip('moto_server not installed (pip install "moto[server]")')
    from tests.search.resilience import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="test",
                               secret_key="test", region="us-east-1", allow_bucket_creation=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                fs.create_dir("mitogan")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield {"env": env, "bucket": "mitogan", "fs": fs}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The S3 server's environment in this process too (SearchStore reads AWS_ENDPOINT_URL)."""
    for k, v in s3_server["env"].items():
        monkeypatch.setenv(k, v)
    return {**os.environ}
