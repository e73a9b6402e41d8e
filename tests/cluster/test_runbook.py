"""cluster/README.md against the code: its commands use options that exist, its cost table follows from
the default space's own budget, and the files it names exist."""

from __future__ import annotations

import re

import pytest

from tests.cluster.schemas import CLUSTER, KUBERAY, REPO, load_yaml, search_args

README = CLUSTER / "README.md"


def _commands(prefix: str) -> list[str]:
    """Every command in the README's code blocks and inline code that starts with ``prefix``
    (backslash continuations joined)."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines() + re.findall(r"`([^`\n]+)`", text)
    found = []
    for line in lines:
        line = line.split(" #")[0].strip()
        if prefix in line:
            found.append(line[line.index(prefix):])
    return found


def test_every_mitogan_search_command_parses():
    commands = [c.split("...")[0].strip() for c in _commands("mitogan search")]  # "...": the same options
    # mentions in the text ("`mitogan search --address`") are not commands
    commands = [c for c in commands if c != "mitogan search" and not c.split()[-1].startswith("--")]
    assert len(commands) >= 5
    for command in commands:
        args = search_args(command.replace('"$PWD/runs"', "runs"))
        assert args.trials > 0, command


def test_job_search_matches_the_rayjob():
    # the search submitted with `ray job submit` in section 5 is the one cluster/kuberay/rayjob.yaml runs
    # (apart from where it is stored)
    (submitted,) = [c for c in _commands("ray job submit --address http://127.0.0.1:8265")]
    ours = vars(search_args(submitted.split(" -- ", 1)[1]))
    theirs = vars(search_args(load_yaml(KUBERAY["RayJob"])["spec"]["entrypoint"]))
    assert {k: v for k, v in ours.items() if k != "storage"} == {k: v for k, v in theirs.items() if k != "storage"}


def test_every_cluster_file_it_names_exists():
    text = README.read_text()
    for path in set(re.findall(r"(?<![\w/])cluster/[\w./-]+\.(?:ya?ml|py|md)", text)) | {"cluster/Dockerfile"}:
        assert (REPO / path).is_file(), path
    for path in ("local_cluster.py", "secret.py", "Dockerfile"):
        assert f"`{path}`" in text


def _cost_table() -> dict[str, str]:
    section = README.read_text().split("## 10.", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[1]) <= set("-:"):
            rows[cells[0]] = cells[1]
    return rows


def test_cost_table_follows_from_the_default_space():
    from mitogan.stopping import grace_steps
    from search.space import load_space

    table = _cost_table()
    space = load_space(str(REPO / "search" / "spaces" / "default.yaml"))
    steps = space.base_config().train.steps
    trials = search_args(load_yaml(KUBERAY["RayJob"])["spec"]["entrypoint"]).trials
    assert int(table["steps per trial"]) == steps and int(table["trials"]) == trials
    # ASHA as search/run.py builds it: grace period mitogan.stopping.grace_steps, reduction factor 3, max_t
    # steps + 1; its rungs (one bracket) are grace * 3^k below max_t, as Ray's ASHA documents them
    grace = grace_steps(space.base_config())
    rungs = [grace * 3 ** k for k in range(20) if grace * 3 ** k <= steps + 1]
    assert table["ASHA rungs (steps)"] == ", ".join(map(str, rungs))
    # each rung keeps 1/3 of the trials that reach it; the rest stop there
    expected = sum((b - a) / 3 ** i for i, (a, b) in enumerate(zip([0, *rungs], [*rungs, steps])))
    assert int(table["expected steps per trial with ASHA"]) == round(expected)
    per_step = float(table["GPU-seconds per step (assumed)"])
    overhead = float(table["overhead factor (assumed)"])
    full = trials * steps * per_step * overhead / 3600
    early = trials * expected * per_step * overhead / 3600
    assert float(table["GPU-hours, no early stopping"]) == pytest.approx(full, abs=0.05)
    assert float(table["GPU-hours, with ASHA"]) == pytest.approx(early, abs=0.05)
    launcher = load_yaml(CLUSTER / "launcher" / "aws.yaml")
    idle = launcher["max_workers"] * launcher["idle_timeout_minutes"] / 60
    assert float(table["GPU-hours, idle workers before scale-down (at most)"]) == pytest.approx(idle, abs=0.05)
    assert float(table["wall-clock hours with ASHA on 8 GPUs"]) == pytest.approx(early / 8, abs=0.05)


def test_local_block_starts_and_stops_only_its_own_cluster():
    from tests.cluster.test_local_cluster import readme_block

    block = readme_block()
    assert "ray stop" not in block  # it would end every Ray process on the machine
    assert block.count("cluster/local_cluster.py up") == block.count("cluster/local_cluster.py down") == 1
    ray_commands = [line for line in block.splitlines() if line.startswith("ray ")]
    assert ray_commands and all('--address "$MITOGAN_CLUSTER_DASHBOARD"' in line for line in ray_commands)
