#!/usr/bin/env bash
# Builds every binary the testbed runs and prints the directory that holds them.
# Upstream binaries (Kubernetes, etcd, echo-basic, coredns) are cached in a directory keyed
# by the pinned versions: cold about 20 minutes on two cores, then nothing to do. The node
# agent (our code) is rebuilt each time; Go's build cache makes that a few seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
key=$(cat "$here/go.mod" "$here/go.sum" "$here/versions.env" "$here/build.sh" | sha256sum | cut -c1-16)
out="${GATEHOUSE_TESTBED_CACHE:-$HOME/.cache/gatehouse/testbed}/bin-$key"
mkdir -p "$out"
cd "$here"
export GOFLAGS=-mod=mod
if [ ! -f "$out/.complete" ]; then
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  build() { # name package
    echo "building $1" >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/$1" "$2" >&2
  }
  build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
  build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
  build kubectl k8s.io/kubernetes/cmd/kubectl
  build etcd go.etcd.io/etcd/server/v3
  build echo-basic sigs.k8s.io/gateway-api/conformance/echo-basic
  echo "building coredns $COREDNS_VERSION" >&2
  (cd /tmp && GOFLAGS= GOBIN="$out" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" >&2)
  touch "$out/.complete"
fi
go build -trimpath -o "$out/nodeagent" ./nodeagent >&2
echo "$out"
