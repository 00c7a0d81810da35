#!/usr/bin/env bash
# Run the two-process delivery test N times (default 20) with two CPU hogs (`yes > /dev/null`)
# beside it, and count the notifications that reached a chat more than once.
#
#   scripts/stress.sh [N]
#
# SQLite by default; set YUYUE_TEST_DATABASE_URL (see scripts/postgres.sh) for PostgreSQL.
# PYTHON overrides the interpreter (default .venv/bin/python), HOGS the number of CPU hogs
# (default 2). Exits non-zero if any run
# failed or delivered a duplicate.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
python=${PYTHON:-.venv/bin/python}
test_id="tests/test_processes.py::test_two_processes_send_every_reminder_exactly_once"

hogs=()
stop_hogs() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null; done
}
trap stop_hogs EXIT
for _ in $(seq 1 "${HOGS:-2}"); do
  yes > /dev/null &
  hogs+=("$!")
done

passed=0 failed=0 duplicates=0 runs_with_duplicates=0
log=$(mktemp)
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  if "$python" -m pytest -q -p no:cacheprovider "$test_id" > "$log" 2>&1; then
    passed=$((passed + 1)); verdict=passed
  else
    failed=$((failed + 1)); verdict=FAILED
  fi
  # The test names the duplicates it saw ("duplicates: N") when there were any.
  extra=$(grep -o 'duplicates: [0-9][0-9]*' "$log" | head -n 1 | awk '{print $2}')
  extra=${extra:-0}
  duplicates=$((duplicates + extra))
  [ "$extra" -gt 0 ] && runs_with_duplicates=$((runs_with_duplicates + 1))
  echo "run $run/$runs: $verdict, duplicates $extra, $(( $(date +%s) - started )) s"
  if [ "$verdict" = FAILED ] && [ "$extra" = 0 ]; then
    grep -E '^E ' "$log" | head -n 5
  fi
done
rm -f "$log"
echo "runs $runs: passed $passed, failed $failed; duplicate notifications $duplicates" \
     "(in $runs_with_duplicates runs)"
[ "$failed" = 0 ] && [ "$duplicates" = 0 ]
