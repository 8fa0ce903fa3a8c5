#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on ${DAGSTER_TEST_PG_HOST:-127.0.0.1}:${DAGSTER_TEST_PG_PORT:-5432}.
# Starts the local Debian cluster if it is installed but stopped; otherwise explains how to get one.
# Used by the deploy tests (tests/deploy) and `make deploy-prereqs`; exit code 0 only when the server answers.
set -euo pipefail
host="${DAGSTER_TEST_PG_HOST:-127.0.0.1}"
port="${DAGSTER_TEST_PG_PORT:-5432}"

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$port"
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

if answers; then
  echo "postgres: server answers on $host:$port"
  exit 0
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ "$(id -u)" = 0 ]; then
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  echo "postgres: no server on $host:$port; starting the local cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    answers && { echo "postgres: started"; exit 0; }
    sleep 1
  done
fi

cat >&2 <<MSG
postgres: no PostgreSQL server answers on $host:$port.
The deploy tests (pytest -m postgres) need a real one. Start it with one of:
  * Debian/Ubuntu with the server installed:  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
  * Not installed yet:  apt-get install -y postgresql && pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
  * Any other server: export DAGSTER_TEST_PG_HOST / DAGSTER_TEST_PG_PORT / DAGSTER_TEST_PG_USER (a role that may
    CREATE DATABASE; DAGSTER_TEST_PG_PASSWORD if it is not trust auth).
MSG
exit 1
