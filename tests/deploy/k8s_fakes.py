"""The one part of a Kubernetes deployment that cannot run here: the API server.

`RecordingApi` stands in for `BatchV1Api` / `CoreV1Api`: it keeps the Jobs dagster-k8s creates and
records every method called (so tests can compare them with the Role in deploy/k8s/rbac.yaml).
`OfflineK8sRunLauncher` is the real `K8sRunLauncher` (same config schema, same Job construction) wired to
those recorders and to a kubeconfig that points nowhere; an instance whose dagster.yaml names it is the
production instance with the cluster unplugged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import kubernetes
import yaml
from dagster_k8s import K8sRunLauncher

# Which RBAC rule (apiGroup, resource, verb) each client method needs.
API_PERMISSIONS = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "read_namespaced_job_status": ("batch", "jobs/status", "get"),
    "create_namespaced_pod": ("", "pods", "create"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod": ("", "pods", "get"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
    "list_namespaced_event": ("", "events", "list"),
}


class RecordingApi:
    """A fake Kubernetes API: created Jobs are kept, every call is recorded, unknown calls fail loudly."""

    jobs: ClassVar[dict[str, kubernetes.client.V1Job]] = {}
    calls: ClassVar[list[str]] = []

    def __init__(self, job_state: str = "active"):
        self.job_state = job_state

    @classmethod
    def reset(cls) -> None:
        cls.jobs.clear()
        cls.calls.clear()

    def __getattr__(self, name: str):
        raise AssertionError(f"dagster-k8s called {name}, which the fake (and the Role) does not cover")

    def _record(self, name: str) -> None:
        type(self).calls.append(name)

    # -- batch/v1
    def create_namespaced_job(self, body, namespace, **_):
        self._record("create_namespaced_job")
        body.metadata.namespace = namespace
        type(self).jobs[body.metadata.name] = body
        return body

    def read_namespaced_job_status(self, name, namespace, **_):
        self._record("read_namespaced_job_status")
        status = kubernetes.client.V1JobStatus(**{self.job_state: 1})
        return kubernetes.client.V1Job(metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace),
                                       status=status)

    def list_namespaced_job(self, namespace, **_):
        self._record("list_namespaced_job")
        return kubernetes.client.V1JobList(items=[j for j in type(self).jobs.values()
                                                  if j.metadata.namespace == namespace])

    def delete_namespaced_job(self, name, namespace, **_):
        self._record("delete_namespaced_job")
        type(self).jobs.pop(name, None)
        return kubernetes.client.V1Status(status="Success")

    # -- core/v1
    def list_namespaced_pod(self, namespace, **_):
        self._record("list_namespaced_pod")
        return kubernetes.client.V1PodList(items=[])

    def read_namespaced_pod(self, name, namespace, **_):
        self._record("read_namespaced_pod")
        return kubernetes.client.V1Pod(metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace))

    def delete_namespaced_pod(self, name, namespace, **_):
        self._record("delete_namespaced_pod")
        return kubernetes.client.V1Status(status="Success")

    def read_namespaced_pod_log(self, name, namespace, **_):
        self._record("read_namespaced_pod_log")
        return ""

    def list_namespaced_event(self, namespace, **_):
        self._record("list_namespaced_event")
        return kubernetes.client.CoreV1EventList(items=[])


def unreachable_kubeconfig() -> str:
    """A syntactically valid kubeconfig for a cluster that does not exist (nothing is ever sent to it)."""
    path = Path(tempfile.gettempdir()) / "dagster-deploy-tests-kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "offline", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
    }))
    return str(path)


class OfflineK8sRunLauncher(K8sRunLauncher):
    """`K8sRunLauncher` from the production config, with the API server replaced by `RecordingApi`."""

    def __init__(self, **config: Any):
        config.pop("load_incluster_config", None)
        config.pop("kubeconfig_file", None)
        super().__init__(**config, load_incluster_config=False, kubeconfig_file=unreachable_kubeconfig(),
                         k8s_client_batch_api=RecordingApi(), k8s_client_core_api=RecordingApi())

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)
