#!/usr/bin/env bash
# Build the real control-plane binaries from Go modules (no Docker, no downloads besides
# the Go module proxy). Each binary set is cached outside the repo, keyed by version, and
# only rebuilt when missing, so a warm run takes seconds.
#
#   kube-apiserver, kube-controller-manager, kubectl  <- k8s.io/kubernetes
#   etcd                                              <- go.etcd.io/etcd/server/v3
#   helm                                              <- helm.sh/helm/v3
#
# `go install pkg@version` refuses modules with replace directives (k8s.io/kubernetes
# replaces its staging modules with ./staging/...), so every build goes through a small
# wrapper module that requires the release and pins the staging modules to their
# published v0.X.Y tags. The replace list is generated from that release's own go.mod.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${BGJOBS_CACHE:-$HOME/.cache/bgjobs}
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[cluster-bins] %s\n' "$*" >&2; }

# have DIR BIN... : true when every BIN is already built in DIR
have() { local d=$1; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }

# new_wrapper DIR NAME : an empty module to hang requires and replaces on
new_wrapper() {
  rm -rf "$1"; mkdir -p "$1"
  (cd "$1" && go mod init "bgjobs.local/build/$2" >/dev/null 2>&1)
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  if have "$out" kube-apiserver kube-controller-manager kubectl; then
    log "kubernetes $v cached in $out"; return
  fi
  log "building kubernetes $v (kube-apiserver, kube-controller-manager, kubectl); a cold build takes a while"
  local w="$cache/build/kubernetes-$v"
  new_wrapper "$w" kubernetes
  cd "$w"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Staging modules are published as k8s.io/<name> v0.<minor>.<patch>.
  local staging_version="v0.${v#v1.}"
  {
    echo "require k8s.io/kubernetes $v"
    sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#replace \2 => \2 '"$staging_version"'#p' "$gomod"
  } >> go.mod
  grep -c '^replace' go.mod | xargs -I{} printf '[cluster-bins] %s staging replaces generated\n' {} >&2
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$v" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  mkdir -p "$out.tmp"
  go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_etcd() {
  local v=$ETCD_VERSION out="$cache/bin/etcd-$ETCD_VERSION"
  if have "$out" etcd; then log "etcd $v cached in $out"; return; fi
  log "building etcd $v"
  local w="$cache/build/etcd-$v"
  new_wrapper "$w" etcd
  cd "$w"
  echo "require go.etcd.io/etcd/server/v3 $v" >> go.mod
  mkdir -p "$out.tmp"
  go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_helm() {
  local v=$HELM_VERSION out="$cache/bin/helm-$HELM_VERSION"
  if have "$out" helm; then log "helm $v cached in $out"; return; fi
  log "building helm $v"
  local w="$cache/build/helm-$v"
  new_wrapper "$w" helm
  cd "$w"
  echo "require helm.sh/helm/v3 $v" >> go.mod
  mkdir -p "$out.tmp"
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
  rm -rf "$out"; mv "$out.tmp" "$out"
}

start=$(date +%s)
build_etcd
build_helm
build_kubernetes
log "done in $(( $(date +%s) - start ))s"
