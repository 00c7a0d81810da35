#!/usr/bin/env bash
# Set everything up and run the whole test suite, on SQLite and then on PostgreSQL.
# Extra arguments go to pytest (e.g. scripts/test.sh -k booking).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

run_pytest() {
  local status=0
  .venv/bin/python -m pytest "$@" || status=$?
  if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  return "$status"
}

echo "== tests on SQLite =="
YUYUE_TEST_DATABASE_URL= run_pytest "$@"

echo "== tests on PostgreSQL =="
url=$(bash scripts/postgres.sh)
trap 'bash scripts/postgres.sh stop' EXIT
YUYUE_TEST_DATABASE_URL="$url" run_pytest "$@"
