"""The KubeRay manifests (cluster/kuberay/) against the KubeRay v1.7.0 CRDs, strictly (no field the
schema does not define), and against what the search asks for."""

from __future__ import annotations

import re

import pytest

from tests.cluster.schemas import (CLUSTER, KUBERAY, LAUNCHERS, crd_errors, crd_schema, deepcopy, load_yaml,
                                   search_args)


@pytest.fixture(scope="module")
def cluster():
    return load_yaml(KUBERAY["RayCluster"])


@pytest.fixture(scope="module")
def job():
    return load_yaml(KUBERAY["RayJob"])


@pytest.fixture(scope="module")
def pvc():
    return load_yaml(CLUSTER / "kuberay" / "storage.yaml")


def _pod_specs(cluster, job):
    """(role, pod spec) of every pod the manifests describe."""
    yield "head", cluster["spec"]["headGroupSpec"]["template"]["spec"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]
    yield "submitter", job["spec"]["submitterPodTemplate"]["spec"]


def _worker(cluster):
    (group,) = cluster["spec"]["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    return group, container


def test_every_manifest_is_tested():
    assert sorted(p.name for p in (CLUSTER / "kuberay").glob("*.yaml")) == ["raycluster.yaml", "rayjob.yaml",
                                                                            "storage.yaml"]


@pytest.mark.parametrize("kind", sorted(KUBERAY))
def test_valid_against_the_crd_strictly(kind):
    doc = load_yaml(KUBERAY[kind])
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", kind)
    assert crd_errors(doc) == []
    # ObjectMeta is only `type: object` in the CRD: keep to the fields every object has
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}


def test_strict_check_catches_fields_the_crd_does_not_define(cluster):
    # the same typo passes the CRD as Kubernetes applies it (unknown fields are pruned), fails strictly
    broken = deepcopy(cluster)
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert crd_errors(broken)
    import jsonschema

    jsonschema.Draft7Validator(crd_schema("RayCluster", strict=False)).validate(broken)


@pytest.mark.parametrize("breakage", [
    "typo deep in a pod", "typo in a worker group", "auth mode not in the enum", "replicas as text",
    "no head group", "unknown top-level spec field",
])
def test_a_broken_raycluster_fails(cluster, breakage):
    broken = deepcopy(cluster)
    spec = broken["spec"]
    group, container = spec["workerGroupSpecs"][0], spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    if breakage == "typo deep in a pod":
        container["env"][0]["valueFrom"]["secretKeyRef"]["keyy"] = "api-key"
    elif breakage == "typo in a worker group":
        group["maxReplica"] = group.pop("maxReplicas")
    elif breakage == "auth mode not in the enum":
        spec["authOptions"]["mode"] = "tokens"
    elif breakage == "replicas as text":
        group["minReplicas"] = "0"
    elif breakage == "no head group":
        del spec["headGroupSpec"]
    else:
        spec["dashboardService"] = {"type": "LoadBalancer"}
    assert crd_errors(broken), breakage


@pytest.mark.parametrize("breakage", ["entrypoint as a list", "typo in the selector key", "typo in the submitter"])
def test_a_broken_rayjob_fails(job, breakage):
    broken = deepcopy(job)
    spec = broken["spec"]
    if breakage == "entrypoint as a list":
        spec["entrypoint"] = spec["entrypoint"].split()
    elif breakage == "typo in the selector key":
        spec["clusterSelectors"] = spec.pop("clusterSelector")
    else:
        spec["submitterPodTemplate"]["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"nam": "x"}}]
    assert crd_errors(broken), breakage


def test_no_field_that_carries_a_cel_rule_is_used(cluster, job):
    # The CRDs' x-kubernetes-validations (CEL) rules are not evaluated here: they sit on deletionStrategy,
    # managedBy and gcsFaultToleranceOptions only, none of which the manifests set.
    for spec in (cluster["spec"], job["spec"]):
        assert not {"deletionStrategy", "managedBy", "gcsFaultToleranceOptions"} & set(spec)


def test_ray_version_is_the_installed_one(cluster):
    import ray

    assert cluster["spec"]["rayVersion"] == ray.__version__


def test_the_job_runs_the_search_on_this_cluster(cluster, job):
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in job["spec"] and not job["spec"].get("shutdownAfterJobFinishes")
    args = search_args(job["spec"]["entrypoint"])
    assert args.space == "default" and args.name and args.trials > 0


def test_gpu_workers_match_what_a_trial_asks_for(cluster, job):
    args = search_args(job["spec"]["entrypoint"])
    group, container = _worker(cluster)
    limits = container["resources"]["limits"]
    assert container["resources"]["requests"] == limits  # guaranteed: what Ray is told is what the pod has
    gpus, cpus = int(limits["nvidia.com/gpu"]), int(limits["cpu"])
    assert gpus == 1  # single-GPU workers
    per_worker = gpus / args.gpus_per_trial
    assert per_worker == int(per_worker) == cpus / args.cpus_per_trial  # four trials fill GPU and CPUs
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 8) and group["replicas"] == 0
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    # the head (0 CPUs) cannot size the search: --max-concurrent fills every worker the autoscaler may add
    assert args.max_concurrent == group["maxReplicas"] * per_worker


def test_no_trial_on_the_head(cluster):
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_same_image_everywhere_and_as_the_launchers(cluster, job):
    images = {c["image"] for _, spec in _pod_specs(cluster, job) for c in spec["containers"]}
    launcher_images = {load_yaml(p)["docker"]["image"] for p in LAUNCHERS.values()}
    assert len(images) == 1 and images == launcher_images


def test_pods_run_as_the_images_non_root_user(cluster, job):
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))
    for role, spec in _pod_specs(cluster, job):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == uid, role


def test_token_and_wandb_key_only_from_secrets(cluster, job):
    auth = cluster["spec"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "mitogan-ray-token"}
    for role, spec in _pod_specs(cluster, job):
        for c in spec["containers"]:
            for env in c.get("env", []):
                if re.search(r"TOKEN|KEY|SECRET|PASSWORD", env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (role, env["name"])
    # the submitter (not a Ray container) gets the cluster's token from the same Secret
    env = {e["name"]: e for e in job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": auth["secretName"], "key": "auth_token"}
    # trials run on the workers: they need the W&B key (optional: W&B logs offline without it)
    _, worker = _worker(cluster)
    wandb = {e["name"]: e for e in worker["env"]}["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert wandb == {"name": "mitogan-wandb", "key": "api-key", "optional": True}


def test_dashboard_has_no_public_service(cluster):
    head = cluster["spec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert not head.get("enableIngress") and "ingressOptions" not in head
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert "headServiceAnnotations" not in cluster["spec"]  # e.g. cloud load-balancer annotations


def test_storage_is_one_shared_volume_that_outlives_the_cluster(cluster, job, pvc):
    args = search_args(job["spec"]["entrypoint"])
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # mounted by the head and every worker at once
    for role, spec in _pod_specs(cluster, job):
        if role == "submitter":
            continue
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
                  if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        # trials write their checkpoints from the node they run on: the storage must be on every node
        assert claims.get(mounts.get(args.storage)) == pvc["metadata"]["name"], role


def test_storage_claim_valid_against_the_pvc_spec_schema(pvc):
    # the CRD embeds Kubernetes' PersistentVolumeClaimSpec (ephemeral volumes): validate against it strictly
    import jsonschema

    pod = crd_schema("RayCluster")["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]["template"]
    volume = pod["properties"]["spec"]["properties"]["volumes"]["items"]
    claim_spec = volume["properties"]["ephemeral"]["properties"]["volumeClaimTemplate"]["properties"]["spec"]
    assert list(jsonschema.Draft7Validator(claim_spec).iter_errors(pvc["spec"])) == []
    broken = deepcopy(pvc["spec"])
    broken["accessMode"] = broken.pop("accessModes")
    assert list(jsonschema.Draft7Validator(claim_spec).iter_errors(broken))
    assert set(pvc["metadata"]) == {"name"}
