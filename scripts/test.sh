#!/usr/bin/env bash
# Set everything up and run the whole test suite, on SQLite and on PostgreSQL.
# Extra arguments go to pytest (e.g. scripts/test.sh -k booking).
# The PostgreSQL pass runs only the tests that use the test database (--database-tests-only):
# the others (rules, parsing, catalogs, the lint gates, the terminal on its own SQLite file) would
# run the same way twice. See "Tests" in README.md.
#
# The two passes run at the same time, one process each (a machine with two cores or more does
# them in the time of the longer one); each one's output is printed whole when both are over, and
# the command fails if either fails. YUYUE_TEST_ONE_PASS_AT_A_TIME=1 runs them one after the other
# instead, with the output as it comes.
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

sqlite_pass() {
  YUYUE_TEST_DATABASE_URL= run_pytest "$@"
}

postgres_pass() {
  YUYUE_TEST_DATABASE_URL="$url" SECOND_PASS=1 run_pytest --database-tests-only "$@"
}

url=$(bash scripts/postgres.sh)
out=$(mktemp -d)
trap 'bash scripts/postgres.sh stop; rm -rf "$out"' EXIT

if [ "${YUYUE_TEST_ONE_PASS_AT_A_TIME:-}" = 1 ]; then
  echo "== tests on SQLite =="
  sqlite_pass "$@"
  echo "== tests on PostgreSQL =="
  postgres_pass "$@"
  exit 0
fi

echo "== tests on SQLite and on PostgreSQL, at the same time (each pass's output follows when both are over) =="
start=$SECONDS
# The passes run in the background, where an interrupt does not reach them: pass it on (and stop the
# server on the way out).
trap 'trap "" TERM; kill -TERM 0 2>/dev/null; exit 130' INT TERM
run_pass() {  # name, function, pytest arguments...
  local name=$1 pass=$2 status=0
  shift 2
  "$pass" "$@" >"$out/$name.log" 2>&1 || status=$?
  echo "$status" >"$out/$name.status"
  echo "-- the $name pass is over after $((SECONDS - start)) s (exit status $status)"
}
run_pass SQLite sqlite_pass "$@" &
sqlite_job=$!
run_pass PostgreSQL postgres_pass "$@" &
postgres_job=$!
wait "$sqlite_job" "$postgres_job" || true

failed=""
for name in SQLite PostgreSQL; do
  echo
  echo "== tests on $name =="
  cat "$out/$name.log"
  status=$(cat "$out/$name.status" 2>/dev/null || echo 1)
  [ "$status" = 0 ] || failed="$failed $name"
done
echo
if [ -n "$failed" ]; then
  echo "FAILED on:$failed" >&2
  exit 1
fi
echo "both passes passed (in $((SECONDS - start)) s)"
