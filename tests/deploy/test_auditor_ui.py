"""The auditor UI: a real `dagster-webserver --read-only` over the PostgreSQL history, loading the production
code location. Mutations are refused (POST and GET); asset and run history queries succeed; no secret is
readable. Then the shipped nginx auth proxy (deploy/proxy/nginx-auditor.conf) runs in a real nginx in front
of it: no login, no access; GraphQL over GET refused; reads pass."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, SECRET_PASSWORD, free_port, graphql, server

pytestmark = pytest.mark.postgres

LAUNCH = """mutation {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "ml-platform", repositoryName: "__repository__",
               jobName: "flight_delay__score"},
    runConfigData: {}}) {
    __typename
    ... on UnauthorizedError { message }
    ... on LaunchRunSuccess { run { runId } }
  }
}"""
WIPE = """mutation { wipeAssets(assetPartitionRanges: [{assetKey: {path: ["flight_delay", "production_model"]}}]) {
  __typename } }"""
HISTORY = """query History($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations(limit: 10) { runId timestamp partition tags { key value }
                                                      metadataEntries { label } } }
  }
}"""
RUNS = "{ runsOrError(limit: 50) { ... on Runs { results { runId jobName status } } } }"


def test_read_only_webserver_refuses_mutations_sent_as_post_and_get(auditor_url, history):
    runs_before = graphql(auditor_url, RUNS)["data"]["runsOrError"]["results"]
    for method in ("POST", "GET"):
        answer = graphql(auditor_url, LAUNCH, method=method)
        assert answer["data"]["launchRun"]["__typename"] == "UnauthorizedError", (method, answer)
    assert graphql(auditor_url, WIPE)["data"]["wipeAssets"]["__typename"] == "UnauthorizedError"
    runs_after = graphql(auditor_url, RUNS)["data"]["runsOrError"]["results"]
    assert len(runs_after) == len(runs_before)


def test_read_only_webserver_serves_asset_and_run_history(auditor_url, history):
    answer = graphql(auditor_url, HISTORY, {"path": ["flight_delay", "production_model"]})
    events = answer["data"]["assetOrError"]["assetMaterializations"]
    assert history["runs"]["train"] in {e["runId"] for e in events}
    promoted = next(e for e in events if e["runId"] == history["runs"]["train"])
    assert "model_version" in {m["label"] for m in promoted["metadataEntries"]}
    assert any(t["key"].startswith("dagster/input_event_pointer/") for t in promoted["tags"])

    days = graphql(auditor_url, HISTORY, {"path": ["flight_delay", "raw_flights"]})
    assert {e["partition"] for e in days["data"]["assetOrError"]["assetMaterializations"]}

    runs = {r["runId"]: r for r in graphql(auditor_url, RUNS)["data"]["runsOrError"]["results"]}
    assert {runs[run_id]["status"] for run_id in history["runs"].values()} == {"SUCCESS"}


def test_no_secret_is_readable_through_graphql(auditor_url, history):
    info = graphql(auditor_url, "{ instance { info } }")["data"]["instance"]["info"]
    assert "env: DAGSTER_PG_PASSWORD" in info and SECRET_PASSWORD not in info
    resources = graphql(auditor_url, """{ allTopLevelResourceDetailsOrError(repositorySelector:
        {repositoryLocationName: "ml-platform", repositoryName: "__repository__"}) {
        ... on ResourceDetailsList { results { name configuredValues { key value type } } } } }""")
    assert SECRET_PASSWORD not in json.dumps(resources)
    assert resources["data"]["allTopLevelResourceDetailsOrError"]["results"]


# ---- the auth proxy, in a real nginx --------------------------------------------------------------------------
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        done = subprocess.run(["bash", str(DEPLOY / "scripts" / "ensure-test-tools.sh")], capture_output=True,
                              text=True, timeout=900)
        found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if found is None:
            pytest.skip(f"nginx could not be installed here:\n{done.stdout[-1000:]}{done.stderr[-1000:]}")
    return found


def ssha(password: str) -> str:
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def request(url: str, *, method="GET", data: bytes | None = None, auth: str | None = None,
            content_type: str | None = None) -> tuple[int, bytes]:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    if content_type:
        headers["Content-Type"] = content_type
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                    timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_nginx_auth_proxy_requires_login_and_refuses_graphql_get(auditor_url, tmp_path: Path):
    nginx = nginx_binary()
    port = free_port()
    (tmp_path / "htpasswd").write_text(f"auditor:{ssha('correct horse')}\n")
    server_block = (DEPLOY / "proxy" / "nginx-auditor.conf").read_text()
    for name, value in {"DAGSTER_UPSTREAM": auditor_url.removeprefix("http://"), "LISTEN_PORT": f"127.0.0.1:{port}",
                        "HTPASSWD_FILE": str(tmp_path / "htpasswd")}.items():
        server_block = server_block.replace("${" + name + "}", value)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "auditor.conf").write_text(server_block)
    # Workers must read the htpasswd file in pytest's private tmp folder: run them as this user.
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
error_log {tmp_path}/error.log warn;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {tmp_path}/access.log;
  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy; fastcgi_temp_path {tmp_path}/fcgi;
  uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
  include {tmp_path}/conf.d/*.conf;
}}
""")
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    args = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]
    proxy = f"http://127.0.0.1:{port}"
    with server(args, dict(os.environ), tmp_path / "nginx.out") as proc:
        wait_http_any(proxy, proc, tmp_path)
        login = "auditor:correct horse"
        assert request(f"{proxy}/server_info")[0] == 401
        assert request(f"{proxy}/server_info", auth="auditor:wrong")[0] == 401
        assert request(f"{proxy}/server_info", auth=login)[0] == 200

        query = json.dumps({"query": HISTORY, "variables": {"path": ["flight_delay", "production_model"]}}).encode()
        status, body = request(f"{proxy}/graphql", method="POST", data=query, auth=login,
                               content_type="application/json")
        assert status == 200 and json.loads(body)["data"]["assetOrError"]["assetMaterializations"]
        mutation = json.dumps({"query": LAUNCH}).encode()
        status, body = request(f"{proxy}/graphql", method="POST", data=mutation, auth=login,
                               content_type="application/json")
        assert json.loads(body)["data"]["launchRun"]["__typename"] == "UnauthorizedError"

        get_mutation = f"{proxy}/graphql?" + urllib.parse.urlencode({"query": LAUNCH})
        assert request(get_mutation, auth=login)[0] == 405
        assert request(f"{proxy}/graphql?" + urllib.parse.urlencode({"query": RUNS}), auth=login)[0] == 405
        assert request(f"{proxy}/graphql", method="POST", data=mutation, auth=login,
                       content_type="text/plain")[0] == 415
        assert request(f"{proxy}/graphql", method="PUT", data=mutation, auth=login)[0] == 405
        assert request(f"{proxy}/anything", method="POST", data=b"x", auth=login)[0] == 403


def wait_http_any(url: str, proc, folder: Path) -> None:
    """nginx answers 401 without login: wait for any HTTP answer."""
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError((folder / "error.log").read_text() if (folder / "error.log").exists() else "")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nginx did not answer")

