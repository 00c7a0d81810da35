#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite, installing it first if needed.
# Prints the database URL on stdout. Stop it with: scripts/postgres.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
PGPORT=${YUYUE_PG_PORT:-55432}
PGDATA=${YUYUE_PG_DATA:-/tmp/yuyue-pg-$PGPORT}

# Prints nothing (and succeeds) when PostgreSQL is not installed yet, so the install step runs.
find_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true)
  [ -n "$found" ] && printf '%s\n' "$found" | sort -V | tail -n 1
  return 0
}

if [ "${1:-}" = "stop" ]; then
  bin=$(find_bin)
  [ -n "$bin" ] && [ -d "$PGDATA" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
  exit 0
fi

bin=$(find_bin)
if [ -z "$bin" ]; then
  echo "installing PostgreSQL (Debian packages)..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(find_bin)
fi
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  rm -rf "$PGDATA" && mkdir -p "$PGDATA" && chown postgres "$PGDATA"
  runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" \
    -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
fi
runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'yuyue_test'" | grep -q 1 \
  || runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres yuyue_test
echo "postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/yuyue_test"
