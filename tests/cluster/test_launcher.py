"""The Ray cluster launcher configs (cluster/launcher/*.yaml) against the schema and the code of the
installed ray, and against what a trial of the search asks for."""

from __future__ import annotations

import re

import pytest

from tests.cluster.schemas import (CLUSTER, LAUNCHERS, deepcopy, header_command, launcher_errors, load_yaml,
                                   search_args)

SECRET_PY = "/opt/mitogan/cluster/secret.py"  # where cluster/Dockerfile puts cluster/secret.py


@pytest.fixture(params=sorted(LAUNCHERS), ids=str)
def launcher(request):
    return request.param, load_yaml(LAUNCHERS[request.param])


def test_every_launcher_file_is_tested():
    # a new launcher config must be added to LAUNCHERS (and so to every test here)
    assert sorted(p.name for p in (CLUSTER / "launcher").glob("*.yaml")) == sorted(p.name for p in LAUNCHERS.values())


def test_valid_against_rays_schema(launcher):
    _, config = launcher
    assert launcher_errors(config) == []


@pytest.mark.parametrize("breakage", [
    "unknown top-level key", "unknown node type key", "GPU count as text", "no provider", "unknown docker key",
])
def test_a_broken_copy_fails_the_schema(launcher, breakage):
    _, config = launcher
    broken = deepcopy(config)
    gpu = broken["available_node_types"]["gpu"]
    if breakage == "unknown top-level key":
        broken["max_worker"] = 8  # typo of max_workers
    elif breakage == "unknown node type key":
        gpu["max_worker"] = 8
    elif breakage == "GPU count as text":
        gpu["resources"]["GPU"] = "1"
    elif breakage == "no provider":
        del broken["provider"]
    else:
        broken["docker"]["imagee"] = broken["docker"].pop("image")
    assert launcher_errors(broken), breakage


def test_ray_prepares_and_validates_it_without_adding_setup_commands(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    _, config = launcher
    full = prepare_config(deepcopy(config))  # what `ray up` does first: merge the provider's defaults
    validate_config(full)
    # left out, Ray merges in its defaults: pip installs on every node (on GCP an old googleapiclient)
    assert full["setup_commands"] == full["head_setup_commands"] == full["worker_setup_commands"] == []


def test_cpu_head_and_0_to_8_single_gpu_workers(launcher):
    _, config = launcher
    types = config["available_node_types"]
    assert set(types) == {"head", "gpu"} and config["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}  # no trial on the head, so no GPU needed there
    assert (types["gpu"]["min_workers"], types["gpu"]["max_workers"], config["max_workers"]) == (0, 8, 8)
    assert types["gpu"]["resources"]["GPU"] == 1


def test_same_image_on_every_node(launcher):
    _, config = launcher
    docker = config["docker"]
    assert docker["image"].endswith("/mitogan:0.1.0")
    assert not {"head_image", "worker_image"} & set(docker)
    assert all("docker" not in t for t in config["available_node_types"].values())


def test_token_auth_on_head_and_workers_from_the_secret_store(launcher):
    provider, config = launcher
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert "RAY_AUTH_MODE=token" in start, key
        assert re.search(rf'RAY_AUTH_TOKEN="\$\(python {re.escape(SECRET_PY)} {provider} ', start), key
        assert re.search(rf'WANDB_API_KEY="\$\(python {re.escape(SECRET_PY)} {provider} ', start), key
        # the exports come before `ray start`, in the same shell
        assert start.index("RAY_AUTH_TOKEN=") < start.index("ray start"), key


def test_no_secret_value_in_the_file(launcher):
    provider, _ = launcher
    text = LAUNCHERS[provider].read_text()
    # every assignment of a secret takes its value from a command, never a literal
    for name in ("RAY_AUTH_TOKEN", "WANDB_API_KEY"):
        for value in re.findall(rf"{name}=(\S+)", text):
            assert value.startswith("\"$(python"), (name, value)
    assert not re.search(r"(?i)(aws_secret_access_key|private_key|password)\s*[:=]", text)


def test_dashboard_only_on_the_heads_loopback(launcher):
    _, config = launcher
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard` (SSH port-forward)


def test_the_documented_search_fits_the_gpu_workers(launcher):
    provider, config = launcher
    args = search_args(header_command(LAUNCHERS[provider]))
    gpu = config["available_node_types"]["gpu"]
    per_worker = min(gpu["resources"]["GPU"] / args.gpus_per_trial, gpu["resources"]["CPU"] / args.cpus_per_trial)
    assert per_worker == int(per_worker) >= 1  # whole trials per worker, neither GPU nor CPU left idle
    assert gpu["resources"]["GPU"] / args.gpus_per_trial == gpu["resources"]["CPU"] / args.cpus_per_trial
    # with the head at 0 CPUs the search cannot size itself: --max-concurrent fills every worker
    assert args.max_concurrent == gpu["max_workers"] * per_worker
    assert args.storage.startswith({"aws": "s3://", "gcp": "gs://"}[provider])
    assert args.space == "default" and args.name


def test_secret_helper_path_is_where_the_image_puts_it():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert "WORKDIR /opt/mitogan" in dockerfile and "COPY cluster/secret.py ./cluster/secret.py" in dockerfile
