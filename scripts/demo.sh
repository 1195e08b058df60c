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

step "Serve the champion: 300 requests as in training, then 600 drifted ones with their labels"
python generate.py --drift --out data/credit_drift.parquet
port=${SHIPWAY_DEMO_PORT:-8765}
shipway serve models:/credit@champion --port "$port" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
python request.py --url "http://127.0.0.1:$port" --requests 300 --concurrency 8
python request.py --url "http://127.0.0.1:$port" --requests 600 --concurrency 8 \
  --data data/credit_drift.parquet --feedback
kill -TERM "$server"   # stopping flushes the prediction log
wait "$server" || true
trap - EXIT

step "Monitor the champion: its last hour of traffic against its training data"
mkdir -p reports
shipway monitor run models:/credit@champion --window 1h --target default \
  --output reports/monitor.html --json reports/monitor.json
echo "Open $(pwd)/reports/monitor.html in a browser for the per-feature plots."

# Production takes only approved versions, and nobody approves their own request. The data
# scientist running this demo asks; a second person, alice, approves.
me=${SHIPWAY_ACTOR:-$(id -un)}
approval_id() { python -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }

step "Four eyes: ${me} asks to put the champion in production, alice approves"
approval=$(shipway approvals request models:/credit@champion --env production \
  --comment "first release of the credit model" --json | approval_id)
echo "${me} requested approval ${approval}. Approving it themselves is refused:"
shipway approvals approve "$approval" || true
echo "alice approves it:"
SHIPWAY_ACTOR=alice shipway approvals approve "$approval" --comment "metrics and monitoring reviewed"

step "Deploy the champion to staging and production (model servers behind a gateway)"
staging=${SHIPWAY_DEMO_STAGING_PORT:-8101}
production=${SHIPWAY_DEMO_PRODUCTION_PORT:-8102}
trap 'shipway deployments down staging >/dev/null 2>&1 || true; shipway deployments down production >/dev/null 2>&1 || true' EXIT
shipway deploy models:/credit@champion --env staging --port "$staging"
shipway deploy models:/credit@champion --env production --port "$production" --replicas 2
shipway deployments list

step "Train a second version and canary it into production, under traffic"
log=$(mktemp)
python train.py --learning-rate 0.1 --max-iter 200 | tee "$log"
candidate=$(grep -o "models:/credit/[0-9]*" "$log" | head -n1); rm -f "$log"
echo "The canary needs its own approval: ${me} asks, alice approves."
approval=$(shipway approvals request "$candidate" --env production \
  --comment "retrained with a higher learning rate" --json | approval_id)
SHIPWAY_ACTOR=alice shipway approvals approve "$approval" --comment "canary it"
shipway approvals list --env production
python request.py --url "http://127.0.0.1:$production" --duration 45 --concurrency 4 >/dev/null &
traffic=$!
shipway rollout start "$candidate" --env production --steps 10,50,100 --interval 10s --wait
wait "$traffic" || true
shipway rollout status --env production
shipway deployments show production

step "The pipeline, from commit to staging: tests, lint, security, train, validate, deploy, smoke"
shipway pipeline run --to smoke
pending() { python -c '
import json, sys
found = json.load(sys.stdin)
print(found[0]["id"] if found else "")'; }

step "The gate and the canary: the pipeline waits for an approver, then canaries into production"
python request.py --url "http://127.0.0.1:$production" --duration 120 --concurrency 4 >/dev/null &
traffic=$!
shipway pipeline run --from gate &
pipeline=$!
approval=""
for _ in $(seq 1 120); do
  approval=$(shipway approvals list --env production --status pending --json | pending)
  [ -n "$approval" ] && break
  sleep 1
done
echo "The pipeline asked for approval ${approval}; alice approves it:"
SHIPWAY_ACTOR=alice shipway approvals approve "$approval" --comment "validated in staging"
wait "$pipeline"
kill "$traffic" 2>/dev/null || true
wait "$traffic" 2>/dev/null || true
shipway pipeline list --limit 3

step "New data drifts; the monitor's alert starts a retraining that publishes a challenger"
python generate.py --drift --seed 11 --out data/credit_new.parquet
shipway monitor watch models:/credit@champion --window 1h --target default --every 1h --runs 1 \
  --command "shipway retrain credit --trigger drift --detach"
run_state() { python -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["trigger"] == "retrain:drift"]
print(" ".join([runs[0]["id"], runs[0]["status"]]) if runs else "")'; }
state=""
for _ in $(seq 1 300); do
  state=$(shipway pipeline list --json | run_state)
  case "$state" in *running*|"") sleep 1 ;; *) break ;; esac
done
retraining=${state%% *}
shipway pipeline show "$retraining"

step "The challenger goes through the gate (alice approves) and the canary"
approval=$(shipway approvals list --env production --status pending --json | pending)
if [ -n "$approval" ]; then
  SHIPWAY_ACTOR=alice shipway approvals approve "$approval" --comment "retrained on new data"
  python request.py --url "http://127.0.0.1:$production" --duration 90 --concurrency 4 >/dev/null &
  traffic=$!
  shipway retrain credit --resume "$retraining"
  kill "$traffic" 2>/dev/null || true
  wait "$traffic" 2>/dev/null || true
else
  echo "The policy did not ask for an approval: see the retraining's decision above."
fi
shipway models lineage models:/credit@champion
shipway deployments down staging
shipway deployments down production
trap - EXIT

step "Build the champion's container image and run it"
# The same engine detection as `shipway build` (docker, then podman, then buildah); engine flags
# this machine may need come from ./shipway.yaml. No engine: say so and go on.
engine=$(python -c '
from shipway.errors import EngineNotFoundError
from shipway.packaging.engines import find_engine
try:
    print(find_engine().name)
except EngineNotFoundError:
    pass
')
if [ -z "$engine" ]; then
  echo "No container engine found (looked for docker, podman, buildah): skipping the image build and run. Install podman or Docker to include it."
else
  # The first build on a machine also makes the base image (about a minute) and resolves the
  # wheelhouse; later builds reuse both.
  shipway build models:/credit@champion --engine "$engine"
  tag=$(python -c 'from shipway.packaging.images import list_images
print(list_images("models:/credit@champion")[-1].tag)')
  if [ "$engine" = buildah ]; then
    echo "Built $tag with buildah, which cannot run containers: run it with podman or Docker."
  else
    iport=${SHIPWAY_DEMO_IMAGE_PORT:-8766}
    container="shipway-demo-$$"
    trap '"$engine" rm -f "$container" >/dev/null 2>&1 || true' EXIT
    shipway run-image "$tag" --engine "$engine" --port "$iport" --name "$container"
    python request.py --url "http://127.0.0.1:$iport" --requests 1 --concurrency 1
    "$engine" rm -f "$container" >/dev/null 2>&1 || true
    trap - EXIT
    echo "Stopped the container."
  fi
fi

step "Audit trail"
shipway audit log --limit 8
shipway audit verify
