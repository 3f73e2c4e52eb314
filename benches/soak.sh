#!/usr/bin/env bash
# Soak: is the proxy's memory budget what the process really uses, under traffic to ever new
# URLs? examples/reverse_proxy (CacheLayer, --memory-budget) in front of benches/tools/origin, driven
# by wrk over random URLs: /k/<n>, some with a query (/k/<n>?page=<1..3>), and /v/<n> whose
# responses vary on Accept-Language (three languages). For each budget a fresh proxy runs for
# DURATION seconds; its RSS is sampled every 10 s and printed against the target
# 1.3 x budget + 40 MiB.
#
# The proxy is pinned to CPU 0, the origin and wrk to CPU 1 (taskset), so that the load
# generator does not starve the process under test. Every server binds an ephemeral loopback
# port.
#
# Needs: wrk, taskset.
# Usage: benches/soak.sh
#   env: BUDGETS="16 64 256" (MiB)  DURATION=60 (s)  KEYS=2000000  CONNECTIONS=32
#        CACHE_CONTROL="max-age=3600" (the origin's; "no-store" checks what is kept for
#        responses that may not be stored)
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGETS=${BUDGETS:-16 64 256}
DURATION=${DURATION:-60}
KEYS=${KEYS:-2000000}
CONNECTIONS=${CONNECTIONS:-32}
CACHE_CONTROL=${CACHE_CONTROL:-max-age=3600}
SAMPLE_EVERY=10

for tool in wrk taskset; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
CPUS=$(nproc)
if [ "$CPUS" -ge 2 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi

cargo build --release --example reverse_proxy --bin origin >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

WORK=$(mktemp -d)
# Copies: a build in a shared target directory cannot swap the binaries mid-run.
cp "$TARGET_DIR/release/examples/reverse_proxy" "$TARGET_DIR/release/origin" "$WORK/"
PROXY="$WORK/reverse_proxy"
ORIGIN="$WORK/origin"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts "$@" in the background pinned to CPU $1, logging to $2; waits until it prints a
# loopback address and sets ADDR to it and PID to its process id.
start_server() {
    local cpu=$1 log=$2
    shift 2
    taskset -c "$cpu" "$@" >"$log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        ADDR=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
        if [ -n "$ADDR" ]; then return 0; fi
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "error: $* exited: $(tr '\n' ' ' <"$log")" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "error: $* did not start" >&2
    return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

cat >"$WORK/random.lua" <<LUA
local keys = $KEYS
local languages = { "en", "fr", "de" }
function setup(thread) thread:set("seed", math.random(1, 2^30)) end
function init(args) math.randomseed(os.time() + seed) end
function request()
    local n = math.random(1, keys)
    local pick = math.random(1, 10)
    if pick == 1 then
        return wrk.format("GET", "/k/" .. n .. "?page=" .. math.random(1, 3))
    elseif pick == 2 then
        local language = languages[math.random(1, #languages)]
        return wrk.format("GET", "/v/" .. n, { ["Accept-Language"] = language })
    end
    return wrk.format("GET", "/k/" .. n)
end
LUA

start_server "$LOAD_CPU" "$WORK/origin.log" "$ORIGIN" --listen 127.0.0.1:0 --cache-control "$CACHE_CONTROL"
ORIGIN_ADDR=$ADDR

echo "origin Cache-Control: $CACHE_CONTROL; $KEYS keys; ${DURATION}s per budget; proxy on CPU $PROXY_CPU, origin and wrk on CPU $LOAD_CPU"
printf '%-8s %-6s %-10s %-10s %-8s\n' "budget" "time" "RSS" "target" "RSS/budget"
for budget_mib in $BUDGETS; do
    budget=$((budget_mib * 1024 * 1024))
    target_mib=$(awk -v b="$budget_mib" 'BEGIN { printf "%.0f", 1.3 * b + 40 }')
    start_server "$PROXY_CPU" "$WORK/proxy-$budget_mib.log" "$PROXY" --listen 127.0.0.1:0 \
        --upstream "http://$ORIGIN_ADDR" --memory-budget "$budget"
    proxy_pid=$PID
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/random.lua" \
        "http://$ADDR" >"$WORK/wrk-$budget_mib.txt" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    for ((t = SAMPLE_EVERY; t <= DURATION; t += SAMPLE_EVERY)); do
        sleep "$SAMPLE_EVERY"
        rss_mib=$(awk -v k="$(rss_kib "$proxy_pid")" 'BEGIN { printf "%.0f", k / 1024 }')
        ratio=$(awk -v r="$rss_mib" -v b="$budget_mib" 'BEGIN { printf "%.2f", r / b }')
        printf '%-8s %-6s %-10s %-10s %-8s\n' "${budget_mib}MiB" "${t}s" "${rss_mib}MiB" \
            "${target_mib}MiB" "$ratio"
    done
    wait "$wrk_pid" || true
    rate=$(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk-$budget_mib.txt")
    errors=$(grep -E 'Non-2xx|Socket errors' "$WORK/wrk-$budget_mib.txt" | tr '\n' ' ' || true)
    echo "  ${budget_mib}MiB: ${rate:-?} requests/s ${errors}"
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
done
