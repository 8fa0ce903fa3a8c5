"""Fast checks of the files in deploy/: the production code location loads and puts training on its own pods,
deploy/dagster.yaml is a valid instance config that takes every credential from the environment, the Helm
values say the same as deploy/dagster.yaml, the manifests are valid Kubernetes, and no secret is committed."""

from __future__ import annotations

import re
import runpy

import kubernetes_validate
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from ml_assets.spec.catalog import use_cases
from tests.deploy.conftest import DEPLOY, PRODUCTION_LOCATION, REPO, production_instance_config

VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
# Every use case of the defs folder (flight_delay and any other `defs.yaml`) trains on step pods.
USE_CASES = sorted(use_cases())
TRAIN_JOBS = {f"{name}__{job}" for name in USE_CASES for job in ("train_evaluate_promote", "reproduce")}
TRAINING_OPS = {f"{name}__{op}" for name in USE_CASES for op in ("candidate_model", "model_reproducibility")}


@pytest.fixture(scope="module")
def location():
    return runpy.run_path(str(PRODUCTION_LOCATION))


def test_production_code_location_runs_training_jobs_on_step_pods(location):
    assert "flight_delay" in USE_CASES
    repo = location["defs"].get_repository_def()
    executors = {job.name: job.executor_def.name for job in repo.get_all_jobs()}
    assert {name for name, executor in executors.items() if executor == "k8s_step_pods"} == TRAIN_JOBS
    for name in USE_CASES:
        for light in ("ingest", "daily", "score", "rollback"):
            assert executors[f"{name}__{light}"] == "in_process"
    for name in TRAIN_JOBS:
        assert repo.get_job(name).tags["ml/compute"] == "training"
    # A sensor that requests a training job requests the Kubernetes one (one definition per name).
    for sensor in repo.sensor_defs:
        for target in sensor.targets:
            if target.job_name in TRAIN_JOBS:
                assert repo.get_job(target.job_name).executor_def.name == "k8s_step_pods"
    config = location["executor_config"](0)
    assert set(config["per_step_k8s_config"]) == TRAINING_OPS
    assert config["max_concurrent"] == 2


def test_instance_config_is_valid_and_reads_credentials_from_the_environment(tmp_path, deploy_env):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        db = config[storage]["config"]["postgres_db"]
        assert db["scheme"] == "postgresql+psycopg2"
        assert {key: value for key, value in db.items() if key != "scheme"} == {
            "hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"},
            "db_name": {"env": "DAGSTER_PG_DB"}, "username": {"env": "DAGSTER_PG_USERNAME"},
            "password": {"env": "DAGSTER_PG_PASSWORD"}}
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 6
    assert config["retention"]["sensor"]["purge_after_days"]["success"] == -1  # audit: runs are never purged


def test_helm_values_say_what_deploy_dagster_yaml_says():
    instance = production_instance_config()
    launcher = instance["run_launcher"]["config"]
    chart = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert VALUES["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert chart["labels"] == launcher["labels"]
    assert chart["resources"] == launcher["resources"]
    assert chart["securityContext"] == launcher["security_context"]
    assert chart["failPodOnRunFailure"] == launcher["fail_pod_on_run_failure"]
    assert chart["imagePullPolicy"] == launcher["image_pull_policy"]
    job_spec = launcher["run_k8s_config"]["job_spec_config"]
    assert chart["runK8sConfig"]["jobSpecConfig"] == {"backoffLimit": job_spec["backoff_limit"],
                                                      "ttlSecondsAfterFinished": job_spec["ttl_seconds_after_finished"]}

    runs = instance["concurrency"]["runs"]
    assert VALUES["concurrency"]["enabled"]
    assert VALUES["concurrency"]["runs"] == {"maxConcurrentRuns": runs["max_concurrent_runs"],
                                             "tagConcurrencyLimits": runs["tag_concurrency_limits"]}
    daemon = VALUES["dagsterDaemon"]
    camel = {"start_timeout_seconds": "startTimeoutSeconds", "cancel_timeout_seconds": "cancelTimeoutSeconds",
             "max_resume_run_attempts": "maxResumeRunAttempts", "poll_interval_seconds": "pollIntervalSeconds",
             "free_slots_after_run_end_seconds": "freeSlotsAfterRunEndSeconds", "enabled": "enabled"}
    assert {camel[k]: v for k, v in instance["run_monitoring"].items()} == daemon["runMonitoring"]
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": instance["run_retries"]["max_retries"],
                                    "retryOnAssetOrOpFailure": instance["run_retries"]["retry_on_asset_or_op_failure"]}
    assert daemon["runCoordinator"]["type"] == instance["run_coordinator"]["class"]
    retention = VALUES["retention"]
    assert retention["enabled"]
    assert retention["schedule"]["purgeAfterDays"] == instance["retention"]["schedule"]["purge_after_days"]
    sensor_days = dict(retention["sensor"]["purgeAfterDays"])
    assert sensor_days.pop("started") == -1
    assert sensor_days == instance["retention"]["sensor"]["purge_after_days"]
    assert VALUES["postgresql"]["postgresqlScheme"] == instance["run_storage"]["config"]["postgres_db"]["scheme"]
    assert VALUES["telemetry"]["enabled"] == instance["telemetry"]["enabled"]


def test_helm_values_deploy_the_code_location_an_auditor_webserver_and_no_secret():
    assert VALUES["dagsterWebserver"]["enableReadOnly"] is True
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"][:2] == ["--python-file", f"/opt/dagster/app/{PRODUCTION_LOCATION.name}"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["image"]["tag"] != "latest"
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["ML_LAKEHOUSE_ROOT"].startswith(("s3://", "gs://"))  # shared by every pod
    assert env["ML_K8S_TRAINING_GPUS"] == "0"
    # The password lives only in the Secret named here; the chart must not generate one from a value.
    assert VALUES["generatePostgresqlPasswordSecret"] is False and VALUES["postgresql"]["postgresqlPassword"] == ""
    assert VALUES["global"]["postgresqlSecretName"] == production_instance_config()["run_launcher"]["config"][
        "postgres_password_secret"]["env"].replace("DAGSTER_K8S_PG_PASSWORD_SECRET", "dagster-postgresql-secret")
    assert VALUES["rbacEnabled"] is False  # deploy/k8s/rbac.yaml is the (minimal) Role
    assert VALUES["global"]["serviceAccountName"] == "dagster"


def test_kubernetes_manifests_are_valid():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kubernetes_validate.validate(doc, "1.33.0", strict=True)


SECRET_PATTERNS = [
    # a credential-like key with a literal value (not {env: ...}, not "$VARIABLE", not empty)
    re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)\b\s*[:=]\s*[\"']?(?!\{|\$|\"\"|''|$|\s*#)"
               r"[^\s\"'{$]{6,}"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def test_no_secret_in_any_deploy_file():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "screenshots" not in p.parts
             and "__pycache__" not in p.parts]
    assert DEPLOY / "dagster.yaml" in files
    leaks = []
    for path in files:
        text = path.read_text(errors="ignore")
        for pattern in SECRET_PATTERNS:
            leaks += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not leaks, leaks


def test_dockerfile_builds_a_pinned_non_root_code_location_image():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", text, re.M)
    assert "-c requirements.lock" in text  # the exact versions CI tested
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert f"/opt/dagster/app/{PRODUCTION_LOCATION.name}" in text
    assert not re.search(r"(?im)^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", text)
    assert (DEPLOY / "Dockerfile.dockerignore").exists()
