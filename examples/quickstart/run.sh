#!/usr/bin/env bash
# The quickstart: builds Gatehouse, starts three echo backends on 127.0.0.1:9101-9103 and
# runs `gatehouse standalone examples/quickstart`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-build-deps
cargo build --locked --bin gatehouse --bin gatehouse-echo
bin="${CARGO_TARGET_DIR:-target}/debug"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for b in app-v1:9101 app-v2:9102 legacy:9103; do
  "$bin/gatehouse-echo" --listen "127.0.0.1:${b#*:}" --pod "${b%%:*}" --service "${b%%:*}" &
  pids+=($!)
done
echo
echo "Gatehouse is starting. Try (from another terminal):"
echo "  curl -s -H 'Host: app.example.com' http://127.0.0.1:8080/api"
echo "  curl -sk --resolve app.example.com:8443:127.0.0.1 https://app.example.com:8443/docs"
echo "  curl -s -H 'Host: legacy.example.com' http://127.0.0.1:8080/"
echo "  curl -s http://127.0.0.1:9900/status"
echo
"$bin/gatehouse" standalone examples/quickstart "$@"
