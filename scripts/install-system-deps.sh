#!/usr/bin/env bash
# System packages Shipway's demo and tests need on Debian/Ubuntu: git (runs record the commit)
# and PostgreSQL (the store's tests run against a real server), and Prometheus (its `promtool`
# lints the model server's /metrics exposition in the tests), and for container images podman,
# buildah, runc, uidmap, fuse-overlayfs, debootstrap (the local Python base image) and
# docker-registry (a real OCI registry on loopback), and chromium (the browser test opens the
# monitoring HTML report offline through Playwright), and kubectl (`kubectl kustomize` renders
# the overlays `shipway k8s render` writes). Installs only what is missing.
set -euo pipefail

# kubectl's minor release, for the Kubernetes project's apt repository (used only when no apt
# source configured here has kubectl: Debian's own kubernetes-client, 1.20, is too old for the
# kustomizations Shipway writes).
KUBECTL_MINOR="${KUBECTL_MINOR:-v1.32}"

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
need_kubectl=0
command -v kubectl >/dev/null 2>&1 || need_kubectl=1

if [ ${#missing[@]} -eq 0 ] && [ "$need_kubectl" -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${missing[*]}$([ "$need_kubectl" -eq 1 ] && echo ' kubectl')"
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
if [ ${#missing[@]} -gt 0 ]; then
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$need_kubectl" -eq 1 ]; then
  policy="$(apt-cache policy kubectl 2>/dev/null || true)"
  if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
    echo "Adding the Kubernetes apt repository (pkgs.k8s.io, ${KUBECTL_MINOR}) for kubectl"
    tools=()
    command -v curl >/dev/null 2>&1 || tools+=(curl)
    command -v gpg >/dev/null 2>&1 || tools+=(gpg)
    [ -f /etc/ssl/certs/ca-certificates.crt ] || tools+=(ca-certificates)
    if [ ${#tools[@]} -gt 0 ]; then
      "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${tools[@]}"
    fi
    "${SUDO[@]}" mkdir -p -m 755 /etc/apt/keyrings
    curl -fsSL "https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/Release.key" \
      | "${SUDO[@]}" gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
    echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg]" \
      "https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/ /" \
      | "${SUDO[@]}" tee /etc/apt/sources.list.d/kubernetes.list >/dev/null
    "${SUDO[@]}" apt-get update -qq
  fi
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends kubectl
fi
