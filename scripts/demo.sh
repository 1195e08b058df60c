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
