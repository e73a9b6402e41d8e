"""Schemas of the systems the cluster files deploy on, and the files themselves, for the tests.

- Ray's cluster launcher schema ships in the installed ``ray`` (``ray/autoscaler/ray-schema.json``).
- The KubeRay CRDs (v1.7.0) are in ``../shared/schemas/kuberay/``. Kubernetes accepts and prunes unknown
  fields of a CRD, so a strict check has to add ``additionalProperties: false`` wherever a schema lists
  ``properties`` (as ``kubeconform -strict`` does), except where the schema keeps unknown fields
  (``x-kubernetes-preserve-unknown-fields``; KubeRay v1.7.0 has none).
"""

from __future__ import annotations

import copy
import json
import os
import shlex
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
SHARED_SCHEMAS = Path(os.environ.get("MITOGAN_SHARED_SCHEMAS", REPO.parent / "shared" / "schemas"))
KUBERAY_SCHEMAS = SHARED_SCHEMAS / "kuberay"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
LAUNCHERS = {"aws": CLUSTER / "launcher" / "aws.yaml", "gcp": CLUSTER / "launcher" / "gcp.yaml"}
KUBERAY = {"RayCluster": CLUSTER / "kuberay" / "raycluster.yaml", "RayJob": CLUSTER / "kuberay" / "rayjob.yaml"}


@lru_cache(maxsize=None)
def ray_launcher_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def launcher_errors(config: dict) -> list[str]:
    """Every violation of Ray's launcher schema, as 'path: message'."""
    validator = jsonschema.Draft7Validator(ray_launcher_schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(config)]


def _strict(schema):
    """An OpenAPI v3 (structural) schema as a JSON Schema that rejects fields it does not define."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not") else v
           for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if schema.get("nullable") and "type" in schema:
        out["type"] = [schema["type"], "null"]
    return out


@lru_cache(maxsize=None)
def _crd(kind: str) -> dict:
    path = KUBERAY_SCHEMAS / CRD_FILES[kind]
    if not path.is_file():
        pytest.skip(f"KubeRay CRDs not found at {KUBERAY_SCHEMAS} (set MITOGAN_SHARED_SCHEMAS)")
    # 1-2 MB each: libyaml's loader where PyYAML has it (10x faster than the pure-Python one)
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=None)
def crd_schema(kind: str, strict: bool = True) -> dict:
    """The ray.io/v1 openAPIV3Schema of ``kind`` (strict: unknown fields are errors)."""
    (version,) = [v for v in _crd(kind)["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    return _strict(schema) if strict else schema


def crd_errors(doc: dict) -> list[str]:
    """Every violation of the strict CRD schema of ``doc['kind']``, as 'path: message'."""
    validator = jsonschema.Draft7Validator(crd_schema(doc["kind"]))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def deepcopy(doc):
    return copy.deepcopy(doc)


def search_args(command: str):
    """``mitogan search ...`` (a string, possibly after ``--``) parsed by MitoGAN's own CLI parser."""
    from mitogan.cli import build_parser

    words = shlex.split(command)
    start = words.index("mitogan")
    assert words[start + 1] == "search", command
    return build_parser().parse_args(words[start + 1:])


def header_command(path: Path, marker: str = "ray job submit") -> str:
    """The ``ray job submit ...`` command in a YAML file's header comment (continuation lines joined)."""
    lines = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    for i, line in enumerate(lines):
        if line.startswith(marker):
            command = line
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i]
            return command
    raise AssertionError(f"{path}: no '{marker}' line in the header comment")
