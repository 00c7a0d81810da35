#!/usr/bin/env bash
# Set everything up and run the whole test suite, on SQLite and then on PostgreSQL.
# Extra arguments go to pytest (e.g. scripts/test.sh -k booking).
# The PostgreSQL pass runs only the tests that use the test database (--database-tests-only):
# the others (rules, parsing, catalogs, the lint gates, the terminal on its own SQLite file) would
# run the same way twice. See "Tests" in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

run_pytest() {
  local status=0
  .venv/bin/python -m pytest "$@" || status=$?
  if [ "$status" = 5 ] && [ "${SECOND_PASS:-}" = 1 ]; then
    echo "no test of this selection uses the database: nothing more to run on PostgreSQL"
    return 0
  fi
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
YUYUE_TEST_DATABASE_URL="$url" SECOND_PASS=1 run_pytest --database-tests-only "$@"
