#!/usr/bin/env bash
# make bench's three scripts in a row, with the options they share:
#   bench/run_all.sh [--tether-src PATH] [--save [--label NAME]]
# (HTTP and JSON-RPC with the floors, then WebSocket, then SSE; prints the time it took.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
started=$(date +%s)
"$PY" bench/run.py "$@"
"$PY" bench/ws_bench.py "$@"
"$PY" bench/sse_bench.py "$@"
echo "bench/run_all.sh: $(($(date +%s) - started)) s in all"
