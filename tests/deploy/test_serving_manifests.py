"""The online scoring deployment: Kubernetes manifests validated against the schema (as the Jobs are),
probes and ports that match the app's real routes, and Prometheus rules and the Grafana dashboard that
use only metrics the running app exports. `promtool check rules` runs too when promtool is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from ml_assets.serving.app import ServingConfig, create_app
from ml_assets.serving.metrics import PlatformCollector, exported_metric_names
from ml_assets.spec.catalog import use_cases
from resources import build_resources
from tests.deploy.conftest import DEPLOY

K8S_VERSION = "1.33.0"  # as tests/deploy/test_k8s_jobs.py
SERVING = DEPLOY / "k8s" / "serving.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "serving-dashboard.json"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(SERVING.read_text()) if d}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A real app (not started: no model needed to list routes and metric families)."""
    spec = use_cases()["flight_delay"]
    resources = build_resources(lakehouse_root=str(tmp_path_factory.mktemp("lake")))
    with dg.instance_for_test() as instance:
        yield create_app(spec, instance, resources["lakehouse"], resources["model_registry"], ServingConfig(),
                         start=False)


@pytest.fixture(scope="module")
def exported(app) -> set[str]:
    service = app.state.service
    return exported_metric_names(service.metrics, service.platform)


def test_every_serving_manifest_is_valid_against_the_kubernetes_schema(docs):
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_deployment_runs_mlp_serve_non_root_read_only_with_probes_on_real_routes(docs, app):
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    routes = {route.path for route in app.routes}
    command = container["command"]
    assert command[0] == "mlp" and "serve" in command
    assert command[command.index("--use-case") + 1] in use_cases()
    port = int(command[command.index("--port") + 1])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes and int(annotations["prometheus.io/port"]) == port
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts and mounts["/opt/dagster/dagster_home"]["readOnly"] is True  # the only writable path
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"


def test_service_autoscaler_and_disruption_budget_target_the_deployment(docs):
    deployment = docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = docs["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2  # the PDB can then keep one up
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


# ---- Prometheus rules and the dashboard ---------------------------------------------------------------------
_METRIC = re.compile(r"\bmlp_[a-zA-Z0-9_:]+")


def unknown_metrics(expr: str, exported: set[str]) -> list[str]:
    """Names in a PromQL expression that look like ours but that the app does not export."""
    names = _METRIC.findall(re.sub(r'"[^"]*"', '""', expr))  # not inside label values
    return sorted({n for n in names if n not in exported})


def test_the_metric_check_catches_a_misspelt_metric(exported):
    misspelt = 'rate(mlp_serving_request_total{use_case="x"}[5m])'
    assert unknown_metrics(misspelt, exported) == ["mlp_serving_request_total"]
    assert unknown_metrics('rate(mlp_serving_requests_total{use_case="mlp_nothing"}[5m])', exported) == []


def test_alert_rules_cover_the_required_conditions_with_exported_metrics(exported):
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for group in doc["groups"] for r in group["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert _METRIC.search(rule["expr"]), f"{rule['alert']}: uses none of our metrics"
        assert unknown_metrics(rule["expr"], exported) == [], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    by_metric = " ".join(r["expr"] for r in rules)
    for needed in ("mlp_platform_drifted", "mlp_platform_champion_age_partitions", "mlp_platform_realized_auroc",
                   "mlp_platform_promised_auroc", "mlp_serving_errors_total",
                   "mlp_serving_request_duration_seconds_bucket"):
        assert needed in by_metric, needed  # drift, stale model, AUROC below promise, error rate, p99 latency


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (the structural checks ran)")
def test_promtool_accepts_the_rules():
    proc = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_panels_query_exported_metrics(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "use_case"} <= variables
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert unknown_metrics(target["expr"], exported) == [], (panel["title"], target["expr"])
            assert '$use_case' in target["expr"], panel["title"]
            used |= set(_METRIC.findall(target["expr"]))
    # every family the service and the platform collector export is on the dashboard
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    internal = ("mlp_platform_state_up", "mlp_platform_state_read_seconds")
    wanted = {g for g in PlatformCollector.GAUGES if g not in internal}
    wanted |= {"mlp_serving_requests", "mlp_serving_request_duration_seconds", "mlp_serving_predictions",
               "mlp_serving_errors", "mlp_serving_oov", "mlp_serving_model_info", "mlp_serving_model_loaded"}
    assert wanted <= families, sorted(wanted - families)
