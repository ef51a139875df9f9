#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on 127.0.0.1:55432 for the test suite and prints the
# `export KINORA_TEST_DATABASE_URL=...` line for the caller to eval. Diagnostics go to stderr.
# PostgreSQL refuses to run as root, so the cluster belongs to the `postgres` user.
set -euo pipefail

port="${KINORA_TEST_PG_PORT:-55432}"
base="${TMPDIR:-/tmp}/kinora-test-pg"

bindir=""
for candidate in /usr/lib/postgresql/*/bin; do
  [ -x "$candidate/pg_ctl" ] && bindir="$candidate"
done
if [ -z "$bindir" ]; then
  echo "postgres-server: no PostgreSQL server found; install the 'postgresql' package" >&2
  exit 1
fi

run_as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    su postgres -s /bin/bash -c "$*"
  else
    bash -c "$*"
  fi
}

if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir "$base" --shell /bin/bash postgres
fi

if [ -f "$base/data/postmaster.pid" ]; then
  run_as_postgres "'$bindir/pg_ctl' -D '$base/data' -m fast stop" >&2 || true
fi
rm -rf "$base"
mkdir -p "$base"
[ "$(id -u)" = "0" ] && chown postgres "$base"

run_as_postgres "'$bindir/initdb' -D '$base/data' -U postgres --auth=trust --encoding=UTF8 --no-sync" >&2
run_as_postgres "'$bindir/pg_ctl' -D '$base/data' -l '$base/server.log' -w -t 60 \
  -o \"-c listen_addresses=127.0.0.1 -p $port -k '$base' -c max_connections=300 -c fsync=off\" start" >&2

echo "export KINORA_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
