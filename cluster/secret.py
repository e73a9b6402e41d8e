"""Print one secret from a cloud secret store to stdout, for ``export X="$(python secret.py ...)"``.

The Ray cluster launcher configs (cluster/launcher/) start Ray on every node with the Ray token and the
W&B key taken from the cloud's secret store at that moment, through the node's own cloud identity (an
instance profile on AWS, a service account on GCP): the values live only in the environment of the Ray
processes, never in a file, an image or a launcher YAML.

    python secret.py aws mitogan/ray-auth-token [--region eu-central-1]   # AWS Secrets Manager (boto3)
    python secret.py gcp PROJECT mitogan-ray-auth-token                    # GCP Secret Manager (google-auth)

Exits 1 with a one-line reason on stderr (and nothing on stdout) when the secret cannot be read, so a
node whose identity lacks the permission fails to start Ray instead of starting it without a token.
"""

from __future__ import annotations

import argparse
import base64
import sys

SECRET_MANAGER_API = "https://secretmanager.googleapis.com/v1"


def aws_secret(secret_id: str, region: str | None = None) -> str:
    """``SecretString`` of the latest version of ``secret_id`` in AWS Secrets Manager."""
    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    return client.get_secret_value(SecretId=secret_id)["SecretString"]


def gcp_secret(project: str, name: str, version: str = "latest") -> str:
    """The payload of ``projects/<project>/secrets/<name>/versions/<version>`` (Secret Manager REST API)."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    url = f"{SECRET_MANAGER_API}/projects/{project}/secrets/{name}/versions/{version}:access"
    response = AuthorizedSession(credentials).get(url, timeout=30)
    response.raise_for_status()
    return base64.b64decode(response.json()["payload"]["data"]).decode()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="secret.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="store", required=True)
    aws = sub.add_parser("aws", help="AWS Secrets Manager")
    aws.add_argument("secret_id")
    aws.add_argument("--region", default=None, help="default: the node's configured region")
    gcp = sub.add_parser("gcp", help="GCP Secret Manager")
    gcp.add_argument("project")
    gcp.add_argument("name")
    gcp.add_argument("--version", default="latest")
    args = p.parse_args(argv)
    try:
        value = aws_secret(args.secret_id, args.region) if args.store == "aws" else \
            gcp_secret(args.project, args.name, args.version)
    except Exception as e:  # any failure: say which secret, never print a partial value
        which = args.secret_id if args.store == "aws" else f"{args.project}/{args.name}"
        print(f"secret.py: cannot read {args.store} secret {which}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not value:
        print(f"secret.py: {args.store} secret is empty", file=sys.stderr)
        return 1
    sys.stdout.write(value)  # no newline: $(...) strips it anyway, and a file redirect gets the exact value
    return 0


if __name__ == "__main__":
    sys.exit(main())
