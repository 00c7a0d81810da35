#!/usr/bin/env bash
# Set everything up and run Yuyue: the chat channels that have tokens, or else the terminal
# chat on the embedded SQLite demo. Extra arguments go to `yuyue run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/yuyue db upgrade
.venv/bin/yuyue catalog load
exec .venv/bin/yuyue run "$@"
