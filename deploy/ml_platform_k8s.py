"""The production code location: the platform's definitions plus how they run on Kubernetes.

The image's code server loads this file (`dagster code-server start --python-file .../ml_platform_k8s.py`).
Everything the platform defines (assets, checks, jobs, resources) comes unchanged from
`ml_assets.definitions`; this module only decides *where* steps run:

* Every run is one Kubernetes Job (the instance's `K8sRunLauncher`, deploy/dagster.yaml). Ingest and
  scoring run all their steps inside that run pod.
* The jobs that train (`<use case>__train_evaluate_promote`, `<use case>__reproduce`) use
  `k8s_job_executor`: each step gets a pod of its own, so the training step alone gets the big
  CPU/memory request (and a GPU when `ML_K8S_TRAINING_GPUS` is set) while the run pod stays small.
  Their runs carry the tag `ml/compute=training`, which the instance limits to one at a time.

Per-step compute uses the `dagster-k8s/config` schema (container_config, pod_spec_config, ...), keyed by
the asset's op name in the executor's `per_step_k8s_config`: the training code does not need to know
about Kubernetes. Step pods share nothing but PostgreSQL and the lakehouse, so in production
`ML_LAKEHOUSE_ROOT` must be an object-store URI (s3://, gs://), never a pod-local path.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_k8s import k8s_job_executor

from ml_assets.definitions import build_definitions
from ml_assets.keys import UseCaseJobs, UseCaseKeys, op_name
from ml_assets.spec.catalog import use_cases

GPU_ENV = "ML_K8S_TRAINING_GPUS"
TRAINING_TAG = {"ml/compute": "training"}

# Every step pod of a training job that is not training itself: reading a window, evaluating, deciding,
# promoting.
LIGHT_STEP: dict[str, Any] = {
    "container_config": {
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    },
}


def training_step(gpus: int = 0) -> dict[str, Any]:
    """`dagster-k8s/config` of a step that trains a model: more CPU and memory, GPUs on request."""
    requests: dict[str, str] = {"cpu": "2", "memory": "8Gi"}
    limits: dict[str, str] = {"cpu": "4", "memory": "16Gi"}
    config: dict[str, Any] = {
        "container_config": {"resources": {"requests": requests, "limits": limits}},
        "pod_template_spec_metadata": {"labels": dict(TRAINING_TAG)},
    }
    if gpus:
        # Extended resources are whole units and must have request == limit.
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
        config["pod_spec_config"] = {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    return config


def gpus_from_env() -> int:
    raw = os.environ.get(GPU_ENV, "0").strip() or "0"
    if not raw.isdigit():
        raise ValueError(f"{GPU_ENV} must be a whole number of GPUs per training step, got {raw!r}")
    return int(raw)


def training_ops() -> list[str]:
    """Op names of the steps that train, for every use case of the defs folder."""
    ops = []
    for name in use_cases():
        keys = UseCaseKeys(name)
        ops += [op_name(keys.candidate_model), op_name(keys.model_reproducibility)]
    return ops


def training_jobs() -> list[str]:
    return [job for name in use_cases() for job in (UseCaseJobs(name).train, UseCaseJobs(name).reproduce)]


def executor_config(gpus: int = 0) -> dict[str, Any]:
    """Config of the `k8s_job_executor` that runs the training jobs (one pod per step)."""
    return {
        "step_k8s_config": LIGHT_STEP,
        "per_step_k8s_config": {op: training_step(gpus) for op in training_ops()},
        # A training job is a short chain; two pods at once is enough and bounds the cost of a bad run.
        "max_concurrent": 2,
    }


def _on_kubernetes(job: Any, executor: dg.ExecutorDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=job.name,
        selection=job.selection,
        config=job.config,
        description=job.description,
        tags={**(job.tags or {}), **TRAINING_TAG},
        run_tags=job.run_tags,
        metadata=job.metadata,
        partitions_def=job.partitions_def,
        executor_def=executor,
        hooks=job.hooks,
        op_retry_policy=job.op_retry_policy,
    )


def _retarget_sensor(sensor: Any, replaced: dict[str, Any]) -> Any:
    if not isinstance(sensor, dg.SensorDefinition) or not sensor.has_jobs:
        return sensor
    if not any(job.name in replaced for job in sensor.jobs):
        return sensor
    return sensor.with_attributes(jobs=[replaced.get(job.name, job) for job in sensor.jobs])


def _retarget_schedule(schedule: Any, replaced: dict[str, Any]) -> Any:
    if isinstance(schedule, dg.ScheduleDefinition) and schedule.has_job and schedule.job.name in replaced:
        return schedule.with_updated_job(replaced[schedule.job.name])
    return schedule


def build_k8s_definitions(gpus: int | None = None) -> dg.Definitions:
    gpus = gpus_from_env() if gpus is None else gpus
    base = build_definitions()
    executor = k8s_job_executor.configured(executor_config(gpus), name="k8s_step_pods")
    wanted = set(training_jobs())
    replaced = {job.name: _on_kubernetes(job, executor) for job in base.jobs or [] if job.name in wanted}
    missing = wanted - set(replaced)
    if missing:
        raise ValueError(f"training jobs not defined by ml_assets: {sorted(missing)}")
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        # Sensors and schedules that target a training job must request the Kubernetes version of it.
        schedules=[_retarget_schedule(s, replaced) for s in base.schedules or []],
        sensors=[_retarget_sensor(s, replaced) for s in base.sensors or []],
        jobs=[replaced.get(job.name, job) for job in base.jobs or []],
        resources=base.resources,
        executor=base.executor,
        loggers=base.loggers,
        metadata=base.metadata,
    )


defs = build_k8s_definitions()
