#!/usr/bin/env bash
# The quickstart, end to end on the embedded defaults (SQLite and local files in SHIPWAY_HOME).
set -euo pipefail
cd "$(dirname "$0")/../examples/credit"

step() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }

step "Generate synthetic credit data"
python generate.py

step "Train, track and register the model"
log=$(mktemp)
python train.py | tee "$log"
uri=$(grep -o "models:/credit/[0-9]*" "$log" | head -n1); rm -f "$log"

step "Make ${uri} the champion"
shipway models alias "$uri" champion

step "The registry"
shipway models list

step "Lineage of models:/credit@champion"
shipway models lineage models:/credit@champion

step "Serve the champion and send it 300 requests"
port=${SHIPWAY_DEMO_PORT:-8765}
shipway serve models:/credit@champion --port "$port" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
python request.py --url "http://127.0.0.1:$port" --requests 300 --concurrency 8
kill -TERM "$server"
wait "$server" || true
trap - EXIT

step "Audit trail"
shipway audit log --limit 8
shipway audit verify
