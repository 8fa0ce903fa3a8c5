"""Fixtures of the deployment tests.

* `pg_server` / `pg_database`: the real PostgreSQL server (127.0.0.1:5432 by default) and a database of
  this session's own (`dagster_test_<random>`, dropped at the end), so runs are isolated and repeatable.
* `instance_home`: a DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml with only the run launcher
  swapped for the local one (no cluster here); storage, queue, monitoring, retries and retention are the
  production settings, read from the same environment variables.
* `history`: the demo graph (ingest, train + evaluate + promote, score) written by a separate process.
* `auditor_url`: a real `dagster-webserver --read-only` on that history, loading the production code location.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PRODUCTION_LOCATION = DEPLOY / "ml_platform_k8s.py"
LOCATION_NAME = "ml-platform"

# The demo window: ingest five weeks of 2013, train on January (its last 7 days validate), evaluate and
# score the first week of February. On these days the first model beats the baseline and is promoted.
WINDOW = {"ingest": ("2013-01-01", "2013-02-07"), "train": ("2013-01-01", "2013-01-31"),
          "evaluate": ("2013-02-01", "2013-02-07")}

# A password the server never checks (trust auth) but that every test looks for where it must not be:
# manifests, command lines, GraphQL answers, run logs.
SECRET_PASSWORD = os.environ.get("DAGSTER_TEST_PG_PASSWORD") or f"pg-secret-{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    admin_db: str

    def connect(self, dbname: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=SECRET_PASSWORD,
                                dbname=dbname or self.admin_db, connect_timeout=5)


def _find_login(host: str, port: int) -> tuple[Postgres | None, str]:
    import psycopg2

    users = [os.environ["DAGSTER_TEST_PG_USER"]] if os.environ.get("DAGSTER_TEST_PG_USER") else ["postgres", "root"]
    error = ""
    for user in users:
        for db in ("postgres", "test", user):
            try:
                psycopg2.connect(host=host, port=port, user=user, password=SECRET_PASSWORD, dbname=db,
                                 connect_timeout=5).close()
                return Postgres(host, port, user, db), ""
            except psycopg2.OperationalError as exc:
                error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return None, error


@pytest.fixture(scope="session")
def pg_server() -> Postgres:
    host = os.environ.get("DAGSTER_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("DAGSTER_TEST_PG_PORT", "5432"))
    server, error = _find_login(host, port)
    if server is None:
        started = subprocess.run(["bash", str(DEPLOY / "scripts" / "ensure-postgres.sh")], capture_output=True,
                                 text=True, timeout=120)
        server, error = _find_login(host, port)
        if server is None:
            pytest.fail(
                f"The deploy tests need a real PostgreSQL server on {host}:{port} and none accepts a login "
                f"({error}).\n{started.stdout}{started.stderr}",
                pytrace=False,
            )
    return server


@pytest.fixture(scope="session")
def pg_database(pg_server: Postgres) -> Iterator[str]:
    name = f"dagster_test_{secrets.token_hex(5)}"
    admin = pg_server.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def deploy_env(pg_server: Postgres, pg_database: str) -> Iterator[dict[str, str]]:
    """The environment deploy/dagster.yaml reads, as a pod would get it (password from a Secret)."""
    env = {
        "DAGSTER_PG_HOST": pg_server.host,
        "DAGSTER_PG_PORT": str(pg_server.port),
        "DAGSTER_PG_DB": pg_database,
        "DAGSTER_PG_USERNAME": pg_server.user,
        "DAGSTER_PG_PASSWORD": SECRET_PASSWORD,
        "DAGSTER_K8S_JOB_NAMESPACE": "ml-platform",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "dagster-pipeline-env",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


def production_instance_config() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def write_home(home: Path, *, local_launcher: bool) -> Path:
    """A DAGSTER_HOME with deploy/dagster.yaml; `local_launcher` swaps only the run launcher."""
    home.mkdir(parents=True, exist_ok=True)
    if local_launcher:
        config = production_instance_config()
        config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    return home


@pytest.fixture(scope="session")
def instance_home(tmp_path_factory, deploy_env) -> Path:
    return write_home(tmp_path_factory.mktemp("dagster_home"), local_launcher=True)


@pytest.fixture(scope="session")
def lakehouse(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def proc_env(deploy_env, instance_home: Path, lakehouse: Path) -> dict[str, str]:
    """Environment of every Dagster process the tests start (each builds its own instance)."""
    return {
        **os.environ,
        **deploy_env,
        "DAGSTER_HOME": str(instance_home),
        "ML_LAKEHOUSE_ROOT": str(lakehouse),
        "WHYLOGS_NO_ANALYTICS": "True",
        "PYTHONUNBUFFERED": "1",
    }


def run_proc(args: Sequence[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args[:6])} ... exited {done.returncode}\n--- stderr ---\n"
                             f"{done.stderr[-6000:]}\n--- stdout ---\n{done.stdout[-3000:]}")
    return done


def run_step(command: str, env: dict[str, str], *args: str, timeout: float = 300) -> Any:
    """Run `python -m tests.deploy._procs <command>` (a fresh process, a fresh instance); return its JSON."""
    done = run_proc([sys.executable, "-m", "tests.deploy._procs", command, *args], env, timeout)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def history(proc_env) -> dict[str, Any]:
    """The demo graph, written to PostgreSQL by a process that has exited by the time any test reads it."""
    return run_step("write", proc_env, timeout=600)


# ---- long-running servers --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode} before answering {url}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url} after {timeout} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a server started with start_new_session=True, with the processes it spawned (its group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def server(args: Sequence[str], env: dict[str, str], log: Path, ready_url: str | None = None,
           timeout: float = 120) -> Iterator[subprocess.Popen]:
    with open(log, "w") as out:
        proc = subprocess.Popen(list(args), env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        if ready_url:
            wait_http(ready_url, proc, log, timeout)
        yield proc
    finally:
        stop(proc)


def workspace_file(folder: Path, python_file: Path, location_name: str) -> Path:
    path = folder / "workspace.yaml"
    path.write_text(yaml.safe_dump({"load_from": [{"python_file": {
        "relative_path": str(python_file), "location_name": location_name, "working_directory": str(REPO)}}]}))
    return path


@pytest.fixture(scope="session")
def auditor_url(history, proc_env, tmp_path_factory) -> Iterator[str]:
    """`dagster-webserver --read-only` (what `make ui-readonly` and the chart's read-only Deployment run)."""
    folder = tmp_path_factory.mktemp("auditor")
    workspace = workspace_file(folder, PRODUCTION_LOCATION, LOCATION_NAME)
    port = free_port()
    args = [str(BIN / "dagster-webserver"), "--read-only", "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    with server(args, proc_env, folder / "webserver.log", f"http://127.0.0.1:{port}/server_info", timeout=180):
        yield f"http://127.0.0.1:{port}"


def graphql(url: str, query: str, variables: dict[str, Any] | None = None, *, method: str = "POST") -> dict:
    if method == "GET":
        params = urllib.parse.urlencode({"query": query, **({"variables": json.dumps(variables)} if variables else {})})
        request = urllib.request.Request(f"{url}/graphql?{params}", method="GET")
    else:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{url}/graphql", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
