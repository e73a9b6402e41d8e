"""cluster/Dockerfile without a Docker engine: its install steps are the README's, the files it copies are
enough to run them, its build context holds those files, and it ends as a non-root user."""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.schemas import CLUSTER, REPO

DOCKERFILE = CLUSTER / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        current = ""
    return out


def _runs():
    return [args for word, args in instructions() if word == "RUN"]


def _copies() -> list[tuple[list[str], str]]:
    return [(shlex.split(args)[:-1], shlex.split(args)[-1]) for word, args in instructions() if word == "COPY"]


def _arg_default(name: str) -> str:
    for word, args in instructions():
        if word == "ARG" and args.startswith(f"{name}="):
            return shlex.split(args)[0].split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def test_install_is_the_readmes_make_install():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make search", "make test"]  # the README's two commands ...
    makefile = (REPO / "Makefile").read_text()
    # ... both install first: the search the runtime (`make install`), the tests the dev extras on top
    # (`make install-dev`, the image's install step: the cluster image needs ray[default]'s job server)
    assert re.search(r"^install: \$\(STAMP\)$", makefile, re.M) and re.search(r"^search: \$\(STAMP\)$", makefile, re.M)
    assert re.search(r"^install-dev: \$\(DEV_STAMP\)$", makefile, re.M)
    assert re.search(r"^test: \$\(DEV_STAMP\)$", makefile, re.M)
    assert "`make install` alone" in readme
    (install,) = [r for r in _runs() if "make install" in r]
    assert install.startswith("make install-dev ")
    # the same torch pin as the Makefile: PyPI's Linux x86-64 build of that version is the CUDA one
    makefile_torch = re.search(r"^TORCH \?= (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).strip()
    assert _arg_default("TORCH") == makefile_torch
    assert 'TORCH="$TORCH"' in install


def test_copied_files_are_enough_for_the_install(tmp_path):
    # lay out the build context exactly as the COPY lines do, then dry-run the README's install there
    # and build MitoGAN's wheel from it: a file the install needs but the image lacks fails here
    workdir = tmp_path / "opt" / "mitogan"
    workdir.mkdir(parents=True)
    for sources, target in _copies():
        for src in sources:
            dest = workdir / target / Path(src).name if target.endswith("/") else workdir / target
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / src, dest)
    dry = subprocess.run(["make", "-n", "install-dev", "PYTHON=python3", "VENV=/opt/venv"], cwd=workdir,
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert '/opt/venv/bin/pip install -e ".[dev]"' in dry.stdout
    import importlib.util

    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]  # offline
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q",
                            "-w", str(tmp_path / "wheel"), str(workdir)], capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    (built,) = (tmp_path / "wheel").glob("mitogan-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(built).namelist())
    assert {"search/spaces/default.yaml", "search/spaces/smoke.yaml", "search/cli.py"} <= names


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for one path: the last matching pattern wins, '!' re-includes; a
    pattern that matches a parent folder matches everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        pats = [pat, pat[3:]] if pat.startswith("**/") else [pat]  # '**/' also matches at the top
        if any(fnmatch.fnmatchcase(p, q) if "**" not in q else fnmatch.fnmatchcase(p, q.replace("**/", "*/"))
               for p in prefixes for q in pats):
            ignored = not negate
    return ignored


def test_build_context_holds_what_is_copied_and_nothing_private():
    ignore = CLUSTER / "Dockerfile.dockerignore"  # BuildKit reads <Dockerfile>.dockerignore beside it
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for sources, _ in _copies():
        for src in sources:
            files = [str(p.relative_to(REPO)) for p in (REPO / src).rglob("*.py")] if (REPO / src).is_dir() else [src]
            assert files, src
            for f in files:
                assert not _ignored(f, patterns), f
    for private in (".venv/bin/python", "runs/x/best/generator.pt", ".git/config", "tests/conftest.py",
                    "mitogan/__pycache__/x.pyc", "secrets.env"):
        assert _ignored(private, patterns), private


def test_runs_as_a_non_root_user():
    users = [args for word, args in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"useradd .*--uid " + users[-1].split(":")[0], DOCKERFILE.read_text())


def test_ray_mitogan_and_python_are_on_path():
    env = " ".join(args for word, args in instructions() if word == "ENV")
    assert re.search(r"PATH=/opt/venv/bin:\$PATH", env)  # `ray start` (KubeRay), `mitogan` (RayJob), `python`


def test_cloud_clients_the_nodes_need_are_installed():
    (extra,) = [r for r in _runs() if r.startswith("/opt/venv/bin/pip install")]
    pinned = dict(re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", extra))
    # the launcher's autoscaler on the head: boto3 (AWS), google-api-python-client (GCP)
    assert {"boto3", "google-api-python-client"} <= set(pinned)
    # every third-party module cluster/secret.py imports
    tree = ast.parse((CLUSTER / "secret.py").read_text())
    imported = {a.name.split(".")[0] if a.name != "google.auth" else "google.auth" for n in ast.walk(tree)
                if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names | {"__future__"}}
    distribution = {"boto3": "boto3", "google.auth": "google-auth", "google.auth.transport.requests": "google-auth"}
    assert {distribution[m] for m in third_party} <= set(pinned)


@pytest.mark.parametrize("tool", ["rsync", "openssh-client"])
def test_tools_the_cluster_launcher_uses_inside_the_container(tool):
    # the launcher rsyncs files into the container; the head's autoscaler SSHes to new workers from it
    assert any(f" {tool}" in r and "apt-get install" in r for r in _runs())
