#!/usr/bin/env bash
# System packages Shipway's demo and tests need on Debian/Ubuntu: git (runs record the commit)
# and PostgreSQL (the store's tests run against a real server), and Prometheus (its `promtool`
# lints the model server's /metrics exposition in the tests), and for container images podman,
# buildah, runc, uidmap, fuse-overlayfs, debootstrap (the local Python base image) and
# docker-registry (a real OCI registry on loopback), and chromium (the browser test opens the
# monitoring HTML report offline through Playwright). Installs only what is missing.
set -euo pipefail

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
for tool in podman buildah runc debootstrap docker-registry fuse-overlayfs; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "error: need root or sudo to install ${missing[*]}; install them and re-run." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
