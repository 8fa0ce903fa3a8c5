"""Kubernetes, offline: the Jobs dagster-k8s would create for the platform, built by the real code paths
(the production code location served by a real code server, the instance from deploy/dagster.yaml on
PostgreSQL, `K8sRunLauncher` and `k8s_job_executor`), with only the API server replaced by a recorder.

Each Job is validated against the Kubernetes OpenAPI schema and checked for image, command, environment and
secrets, resources and labels. Then the run pod's command is executed as a local process, as a kubelet
would run it, and the run succeeds in PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._cli.job import _create_run
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs
from dagster._serdes import deserialize_value
from dagster_k8s.client import DagsterKubernetesClient

from tests.deploy.conftest import (
    BIN,
    DEPLOY,
    LOCATION_NAME,
    PRODUCTION_LOCATION,
    REPO,
    SECRET_PASSWORD,
    free_port,
    production_instance_config,
    server,
)
from tests.deploy.k8s_fakes import API_PERMISSIONS, RecordingApi

pytestmark = pytest.mark.postgres

IMAGE = "registry.example.com/ml-platform/code:3f2c1ab"
K8S_VERSION = "1.33.0"
POD_DAGSTER_HOME = "/opt/dagster/dagster_home"
TRAIN_JOB = "flight_delay__train_evaluate_promote"
INGEST_JOB = "flight_delay__ingest"


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def chart_container_context(values: dict[str, Any], release: str = "dagster", namespace: str = "ml-platform"):
    """DAGSTER_CONTAINER_CONTEXT as the chart renders it for a user deployment with
    includeConfigInLaunchedRuns (dagster-user-deployments' `k8sContainerContext` helper)."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{release}-{deployment['name']}-user-env",
                            *[c["name"] for c in deployment.get("envConfigMaps", [])]],
        "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
        "namespace": namespace,
        "service_account_name": values["global"]["serviceAccountName"],
        "env": deployment.get("env", []),
    }
    for key in ("labels", "resources"):
        if deployment.get(key):
            k8s[key] = deployment[key]
    return {"k8s": k8s}


def manifest(job: kubernetes.client.V1Job) -> dict[str, Any]:
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def validate(body: dict[str, Any]) -> None:
    kubernetes_validate.validate(body, K8S_VERSION, strict=True)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# ---- fixtures: the production instance (cluster unplugged) and a real code server ---------------------------------
@pytest.fixture(scope="module")
def k8s_env(deploy_env):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", POD_DAGSTER_HOME)  # as in the daemon's pod: where run pods mount the instance
        yield


@pytest.fixture(scope="module")
def k8s_home(tmp_path_factory, k8s_env) -> Path:
    """deploy/dagster.yaml, unchanged but for the launcher's class (same config, offline API)."""
    config = production_instance_config()
    config["run_launcher"]["module"] = "tests.deploy.k8s_fakes"
    config["run_launcher"]["class"] = "OfflineK8sRunLauncher"
    home = tmp_path_factory.mktemp("k8s_home")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@pytest.fixture(scope="module")
def instance(k8s_home):
    with dg.DagsterInstance.from_config(str(k8s_home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def code_server(proc_env, tmp_path_factory):
    """`dagster code-server start` as the chart's user deployment runs it (image + container context in env)."""
    port = free_port()
    env = {**proc_env, "DAGSTER_CURRENT_IMAGE": IMAGE,
           "DAGSTER_CONTAINER_CONTEXT": json.dumps(chart_container_context(helm_values()))}
    args = [str(BIN / "dagster"), "code-server", "start", "--python-file", str(PRODUCTION_LOCATION),
            "--working-directory", str(REPO), "-h", "127.0.0.1", "-p", str(port), "--location-name", LOCATION_NAME]
    log = tmp_path_factory.mktemp("code_server") / "code_server.log"
    with server(args, env, log) as proc:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping("")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"code server did not start:\n{log.read_text()[-4000:]}") from None
                time.sleep(0.3)
        yield port


@pytest.fixture(scope="module")
def workspace(instance, code_server):
    target = GrpcServerTarget(host="127.0.0.1", port=code_server, socket=None, location_name=LOCATION_NAME)
    with WorkspaceProcessContext(instance, target) as context:
        yield context.create_request_context()


def launch(instance, workspace, job_name: str, run_config=None, tags=None) -> dg.DagsterRun:
    """What the daemon does for a queued run: create it from the remote job, then `instance.launch_run`."""
    location = workspace.get_code_location(LOCATION_NAME)
    repo = next(iter(location.get_repositories().values()))
    run = _create_run(instance=instance, code_location=location, remote_repo=repo,
                      remote_job=repo.get_full_job(job_name), run_config=run_config or {}, tags=tags or {},
                      op_selection=None, run_id=None)
    instance.launch_run(run.run_id, workspace)
    return instance.get_run_by_id(run.run_id)


@pytest.fixture(scope="module")
def train_run(instance, workspace) -> tuple[dg.DagsterRun, dict[str, Any]]:
    RecordingApi.reset()
    run = launch(instance, workspace, TRAIN_JOB)
    return run, manifest(RecordingApi.jobs[f"dagster-run-{run.run_id}"])


# ---- the run worker Job ----------------------------------------------------------------------------------------
def test_run_worker_job_for_the_retraining_run(train_run, instance):
    run, job = train_run
    validate(job)
    assert job["metadata"]["namespace"] == "ml-platform"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["dagster/job"] == TRAIN_JOB and labels["dagster/run-id"] == run.run_id
    assert labels["dagster/code-location"] == LOCATION_NAME
    assert labels["app.kubernetes.io/component"] == "run_worker"
    assert labels["app.kubernetes.io/part-of"] == "ml-platform"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 86400

    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dagster"
    (container,) = pod["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    args = deserialize_value(container["args"][3], ExecuteRunArgs)
    assert args.run_id == run.run_id and args.set_exit_code_on_failure is True
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    env = env_of(container)
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "dagster-postgresql-secret", "key": "postgresql-password"}}
    assert env["DAGSTER_RUN_JOB_NAME"]["value"] == TRAIN_JOB
    assert env["ML_LAKEHOUSE_ROOT"]["value"].startswith("s3://")
    assert env["ML_K8S_TRAINING_GPUS"]["value"] == "0"
    sources = [next(iter(s.items())) for s in container["envFrom"]]
    assert ("configMapRef", {"name": "dagster-pipeline-env"}) in sources
    assert ("configMapRef", {"name": "dagster-ml-platform-user-env"}) in sources
    assert ("secretRef", {"name": "ml-platform-runtime"}) in sources

    # dagster-k8s 0.29 mounts no instance ConfigMap: the run pod builds its instance from the InstanceRef in its
    # arguments (the daemon's deploy/dagster.yaml), resolving {env: ...} from the pod's environment.
    assert container["volumeMounts"] == [] and pod["volumes"] == []
    ref = args.instance_ref
    assert ref.run_storage_data.class_name == "PostgresRunStorage"
    assert ref.event_storage_data.class_name == "PostgresEventLogStorage"
    assert "DAGSTER_PG_PASSWORD" in ref.run_storage_data.config_yaml

    # The password is referenced, never written: not in the manifest, not in the serialized run args.
    assert SECRET_PASSWORD not in json.dumps(job)
    assert instance.get_run_by_id(run.run_id).tags["dagster/image"] == IMAGE
    assert run.tags["ml/compute"] == "training"


# ---- the step Jobs of k8s_job_executor --------------------------------------------------------------------------
def step_jobs(instance, run: dg.DagsterRun, executor_config: dict[str, Any] | None = None) -> dict[str, dict]:
    """Launch every step of `run` through the job's real `k8s_job_executor` (as its run worker would)."""
    recon_repo = ReconstructableRepository.for_file(str(PRODUCTION_LOCATION), "defs", str(REPO))
    recon_job = recon_repo.get_reconstructable_job(run.job_name)
    job_def = recon_job.get_definition()
    config = ResolvedRunConfig.build(job_def, run.run_config).execution.execution_engine_config
    if executor_config is not None:  # the same executor, configured otherwise (e.g. GPUs switched on)
        from dagster._config import process_config
        from dagster_k8s.executor import k8s_job_executor

        config = process_config(k8s_job_executor.config_schema.config_type, executor_config).value
    executor = job_def.executor_def.executor_creation_fn(
        InitExecutorContext(job=recon_job, executor_def=job_def.executor_def, executor_config=config,
                            instance=instance))
    handler = executor._step_handler
    handler._api_client = DagsterKubernetesClient.production_client(batch_api_override=RecordingApi(),
                                                                    core_api_override=RecordingApi())
    plan = create_execution_plan(recon_job, run_config=run.run_config, instance_ref=instance.get_ref())
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(job=recon_job, dagster_run=run, instance=instance, execution_plan=plan,
                           raise_on_error=True, retry_mode=RetryMode.DISABLED),
        log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None)
    RecordingApi.jobs.clear()
    for step in plan.get_all_steps_in_topo_order():
        args = ExecuteStepArgs(job_origin=run.job_code_origin, run_id=run.run_id, step_keys_to_execute=[step.key],
                               instance_ref=instance.get_ref(), print_serialized_events=False)
        context = StepHandlerContext(instance=instance, plan_context=plan_context, steps=[step],
                                     execute_step_args=args, dagster_run=run)
        list(handler.launch_step(context))
        handler.check_step_health(context)
    jobs = [manifest(job) for job in RecordingApi.jobs.values()]
    return {j["spec"]["template"]["metadata"]["labels"]["dagster/op"]: j for j in jobs}


def resources_of(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]["resources"]


def test_step_jobs_give_training_its_own_bigger_pod(train_run, instance):
    run, _ = train_run
    jobs = step_jobs(instance, run)
    assert set(jobs) == {"flight_delay__training_set", "flight_delay__candidate_model",
                         "flight_delay__model_evaluation", "flight_delay__promotion_decision",
                         "flight_delay__production_model"}
    for step, job in jobs.items():
        validate(job)
        pod = job["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == IMAGE
        assert container["args"][:3] == ["dagster", "api", "execute_step"]
        env = env_of(container)
        assert env["DAGSTER_RUN_STEP_KEY"]["value"] == step
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
        assert "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS" in env
        assert {"secretRef": {"name": "ml-platform-runtime"}} in container["envFrom"]
        assert pod["spec"]["serviceAccountName"] == "dagster"
        labels = pod["metadata"]["labels"]
        assert labels["dagster/run-id"] == run.run_id and labels["app.kubernetes.io/component"] == "step_worker"
        assert SECRET_PASSWORD not in json.dumps(job)
        if step == "flight_delay__candidate_model":
            assert resources_of(job) == {"requests": {"cpu": "2", "memory": "8Gi"},
                                         "limits": {"cpu": "4", "memory": "16Gi"}}
            assert labels["ml/compute"] == "training"
            assert "tolerations" not in pod["spec"]
        else:
            assert resources_of(job) == {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}


def test_gpu_request_is_switched_on_by_configuration(train_run, instance, monkeypatch):
    import runpy

    monkeypatch.setenv("ML_K8S_TRAINING_GPUS", "1")
    location = runpy.run_path(str(PRODUCTION_LOCATION))
    assert location["gpus_from_env"]() == 1
    run, _ = train_run
    jobs = step_jobs(instance, run, executor_config=location["executor_config"](location["gpus_from_env"]()))
    training = jobs["flight_delay__candidate_model"]
    validate(training)
    resources = resources_of(training)
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert training["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nvidia.com/gpu" not in json.dumps(jobs["flight_delay__model_evaluation"])

    monkeypatch.setenv("ML_K8S_TRAINING_GPUS", "one")
    with pytest.raises(ValueError, match="whole number"):
        location["gpus_from_env"]()


# ---- RBAC: the Role allows exactly what dagster-k8s calls --------------------------------------------------------
def role_rules() -> set[tuple[str, str, str]]:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "rbac.yaml").read_text()))
    for doc in docs:
        validate(doc)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": helm_values()["global"]["serviceAccountName"],
                                    "namespace": role["metadata"]["namespace"]}]
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_rbac_role_is_exactly_what_the_launcher_and_executor_call(train_run, instance):
    import dagster_k8s

    run, _ = train_run
    launcher = instance.run_launcher
    launcher.check_run_worker_health(run)
    launcher.get_run_worker_debug_info(run)
    instance.report_run_canceling(run)
    launcher.terminate(run.run_id)
    called = {API_PERMISSIONS[name] for name in RecordingApi.calls}
    rules = role_rules()
    assert called <= rules, f"calls the Role does not allow: {called - rules}"

    # Statically: every API method dagster-k8s' launcher, executor and client can call (Pipes aside).
    package = Path(dagster_k8s.__file__).parent
    source = "".join((package / name).read_text() for name in ("client.py", "launcher.py", "executor.py", "job.py"))
    methods = set(re.findall(r"(?:batch|core)_api\.(\w+_namespaced_\w+)\(", source))
    needed = {API_PERMISSIONS[m] for m in methods}
    assert needed == rules, f"missing: {needed - rules}; not needed: {rules - needed}"


# ---- the run pod's command, executed the way the kubelet would ---------------------------------------------------
def pod_environment(container: dict[str, Any], stores: dict[tuple[str, str], dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom sources, then env (literals and secretKeyRef)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        (kind, ref), = source.items()
        env.update(stores[(kind, ref["name"])])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = stores[("secretRef", ref["name"])][ref["key"]]
    return env


def test_run_pod_command_runs_the_ingest_run_to_success(instance, workspace, deploy_env, lakehouse, tmp_path):
    RecordingApi.reset()
    # Light jobs run their steps in the run pod's process (the code location's default executor); the
    # training jobs use a pod per step (k8s_job_executor).
    run = launch(instance, workspace, INGEST_JOB, run_config={},
                 tags={"dagster/asset_partition_range_start": "2013-01-01",
                       "dagster/asset_partition_range_end": "2013-01-02"})
    job = manifest(RecordingApi.jobs[f"dagster-run-{run.run_id}"])
    validate(job)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING

    # The cluster's objects, as the README tells to create them (values from this machine's test database).
    pg = {k: v for k, v in deploy_env.items() if k.startswith("DAGSTER_PG_") and k != "DAGSTER_PG_PASSWORD"}
    stores = {
        ("configMapRef", "dagster-pipeline-env"): {"DAGSTER_HOME": POD_DAGSTER_HOME, **pg},
        ("configMapRef", "dagster-ml-platform-user-env"): {"DAGSTER_HOME": POD_DAGSTER_HOME},
        ("secretRef", "ml-platform-runtime"): {},
        ("secretRef", "dagster-postgresql-secret"): {"postgresql-password": SECRET_PASSWORD},
    }
    env = pod_environment(container, stores)
    assert env["DAGSTER_PG_PASSWORD"] == SECRET_PASSWORD
    # The two paths a pod sees through mounts: the instance ConfigMap and the object store (local folders here).
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    env.update({"DAGSTER_HOME": str(home), "ML_LAKEHOUSE_ROOT": str(lakehouse),
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)})
    done = subprocess.run(container["args"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]

    with dg.DagsterInstance.from_config(str(home)) as fresh:
        finished = fresh.get_run_by_id(run.run_id)
        assert finished.status == dg.DagsterRunStatus.SUCCESS, done.stderr[-5000:]
        key = dg.AssetKey(["flight_delay", "raw_flights"])
        days = {r.partition_key for r in fresh.fetch_materializations(key, limit=100).records
                if r.run_id == run.run_id}
        assert days == {"2013-01-01", "2013-01-02"}
        logs = "".join(str(e.message) for e in fresh.all_logs(run.run_id))
    assert SECRET_PASSWORD not in logs + done.stdout + done.stderr
