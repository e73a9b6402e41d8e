"""cluster/secret.py, with the cloud clients replaced by fakes (no cloud account here)."""

from __future__ import annotations

import base64
import sys
import types

import pytest

from cluster import secret


@pytest.fixture
def fake_boto3(monkeypatch):
    calls = []

    class Client:
        def get_secret_value(self, SecretId):
            calls.append(SecretId)
            if SecretId == "missing":
                raise RuntimeError("ResourceNotFoundException")
            return {"SecretString": "tok-" + SecretId, "ARN": "arn:..."}

    module = types.SimpleNamespace(client=lambda service, region_name=None: calls.append((service, region_name))
                                   or Client())
    monkeypatch.setitem(sys.modules, "boto3", module)
    return calls


def test_aws_prints_the_secret_string_and_nothing_else(fake_boto3, capsys):
    assert secret.main(["aws", "mitogan/ray-auth-token", "--region", "eu-central-1"]) == 0
    assert capsys.readouterr().out == "tok-mitogan/ray-auth-token"  # exact: no newline, no log line
    assert fake_boto3 == [("secretsmanager", "eu-central-1"), "mitogan/ray-auth-token"]


def test_a_missing_secret_fails_with_nothing_on_stdout(fake_boto3, capsys):
    assert secret.main(["aws", "missing"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "cannot read aws secret missing" in out.err


@pytest.fixture
def fake_google(monkeypatch):
    pytest.importorskip("google.auth")  # the real module path must exist for the import in gcp_secret
    seen = {}

    class Response:
        def __init__(self, url):
            self.url = url

        def raise_for_status(self):
            if "nope" in self.url:
                raise RuntimeError("403 Forbidden")

        def json(self):
            return {"name": self.url, "payload": {"data": base64.b64encode(b"s3cr3t\n").decode()}}

    class Session:
        def __init__(self, credentials):
            seen["credentials"] = credentials

        def get(self, url, timeout):
            seen["url"] = url
            return Response(url)

    import google.auth
    import google.auth.transport.requests as transport

    monkeypatch.setattr(google.auth, "default", lambda scopes: (("creds", tuple(scopes)), "project"))
    monkeypatch.setattr(transport, "AuthorizedSession", Session)
    return seen


def test_gcp_reads_the_latest_version_through_the_rest_api(fake_google, capsys):
    assert secret.main(["gcp", "my-project", "mitogan-ray-auth-token"]) == 0
    assert capsys.readouterr().out == "s3cr3t\n"  # the payload exactly as stored
    assert fake_google["url"] == ("https://secretmanager.googleapis.com/v1/projects/my-project/secrets/"
                                  "mitogan-ray-auth-token/versions/latest:access")
    assert fake_google["credentials"] == ("creds", ("https://www.googleapis.com/auth/cloud-platform",))


def test_gcp_permission_denied_fails(fake_google, capsys):
    assert secret.main(["gcp", "my-project", "nope"]) == 1
    assert capsys.readouterr().out == ""
