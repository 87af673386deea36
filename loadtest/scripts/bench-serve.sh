#!/usr/bin/env bash
# Load run against the router as separate programs, the way docs/PERFORMANCE.md measures it:
# gateway-sim's default hosts, `paymesh serve` with a config (default router/paymesh.bench.toml),
# and the bundled harness, all on loopback; the router's resident memory (VmRSS) is sampled every
# RSS_EVERY seconds. Everything runs in a fresh scratch directory (journal, store, reports, logs)
# and stops by itself.
#
#   loadtest/scripts/bench-serve.sh [-c CONFIG] -- LOADTEST ARGS...
#   e.g. loadtest/scripts/bench-serve.sh -- -c 8 -d 64 --duration 60s --mix authorize=100
#
# Needs `cargo build --release` first. Prints the harness's summary, the RSS samples (KiB) and
# the scratch directory holding run.json, run.html and the logs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/target/release}
config=$root/router/paymesh.bench.toml
if [[ ${1:-} == -c ]]; then config=$(realpath "$2"); shift 2; fi
[[ ${1:-} == -- ]] && shift
every=${RSS_EVERY:-5}
dir=$(mktemp -d "${TMPDIR:-/tmp}/paymesh-bench.XXXX")
cd "$dir"
"$bin/gateway-sim" serve --default > gateway-sim.log 2>&1 &
sim=$!
sleep 0.5
"$bin/paymesh" serve --config "$config" > router.log 2>&1 &
router=$!
trap 'kill $router $sim 2>/dev/null || true' EXIT
# The admin port answers once the router is up.
for _ in $(seq 100); do
    curl -sf http://127.0.0.1:9464/health > /dev/null 2>&1 && break
    sleep 0.1
done
sleep 1
( while kill -0 $router 2>/dev/null; do
      echo "$(date +%s) $(awk '/VmRSS/ {print $2}' /proc/$router/status 2>/dev/null)" >> rss.log
      sleep "$every"
  done ) &
"$bin/loadtest" -t 127.0.0.1:7400 --warmup 2s --network-id VAN01 --credential change-me \
    --merchants 100 --json run.json --html run.html -q "$@" | tee loadtest.log
kill $router
wait $router 2>/dev/null || true
echo "router VmRSS KiB (first, max, last): $(awk 'NR==1{f=$2} {if($2>m)m=$2; l=$2} END{print f, m, l}' rss.log)"
echo "reports and logs: $dir"
