#!/usr/bin/env bash
# Bytes per stored response: examples/reverse_proxy (--memory-budget BUDGET, large enough to
# keep everything) in front of benches/tools/origin (every URL a ~600-byte text body, about 750
# bytes on the wire). COUNT distinct URLs (/k/0 ... /k/COUNT-1) are asked for once each, over
# CONNECTIONS keep-alive connections with pipelined requests, then the proxy's RSS (from /proc)
# and the cache's weighted size (the bytes its memory budget counts, from the proxy's
# --stats-path) are read. Prints the RSS empty (after a few warm-up requests) and full, the RSS
# per response, and the weighted size against the RSS the responses added.
#
# Every server binds an ephemeral loopback port.
#
# Usage: benches/stored_size.sh
#   env: COUNT=100000  BUDGET=1073741824 (bytes)  CONNECTIONS=8  RUNS=1
#        BIN_DIR (a directory with reverse_proxy and origin already built; default: build them)
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-100000}
BUDGET=${BUDGET:-1073741824}
CONNECTIONS=${CONNECTIONS:-8}
RUNS=${RUNS:-1}
STATS=/__cache-stats

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release --example reverse_proxy --bin origin >&2
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    BIN_DIR="$TARGET_DIR/release"
    cp "$BIN_DIR/examples/reverse_proxy" "$WORK/"
else
    cp "$BIN_DIR/reverse_proxy" "$WORK/"
fi
# Copies: a build in a shared target directory cannot swap the binaries mid-run.
cp "$BIN_DIR/origin" "$WORK/"

cat >"$WORK/fill.py" <<'PY'
"""GETs /k/<first>.../k/<last - 1> once each over `connections` pipelined keep-alive
connections; exits non-zero unless every answer is a 200."""
import asyncio, sys

port, first, last, connections = (int(a) for a in sys.argv[1:5])
BATCH = 64

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status

async def client(paths):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    bad = 0
    for start in range(0, len(paths), BATCH):
        batch = paths[start:start + BATCH]
        writer.write(b"".join(
            b"GET %s HTTP/1.1\r\nHost: bench.example\r\n\r\n" % p.encode() for p in batch))
        await writer.drain()
        for _ in batch:
            bad += await read_response(reader) != 200
    writer.close()
    return bad

async def main():
    paths = [f"/k/{i}" for i in range(first, last)]
    shares = [paths[i::connections] for i in range(connections)]
    bad = sum(await asyncio.gather(*(client(s) for s in shares if s)))
    if bad:
        sys.exit(f"{bad} answers were not 200")

asyncio.run(main())
PY

# Starts "$@" in the background, logging to $1; waits until it prints a loopback address and
# sets ADDR to it and PID to its process id.
start_server() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
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
stats() { python3 -c "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1]).read().decode().strip())" "http://$1$STATS"; }

start_server "$WORK/origin.log" "$WORK/origin" --listen 127.0.0.1:0 --cache-control max-age=3600
ORIGIN_ADDR=$ADDR
echo "$COUNT distinct ~600-byte responses, budget $BUDGET bytes, $CONNECTIONS connections"
printf '%-4s %-10s %-10s %-12s %-14s %-14s %s\n' run "RSS empty" "RSS full" "RSS/response" \
    "weighted size" "weight/resp." "weighted/(RSS full - empty)"
for run in $(seq "$RUNS"); do
    start_server "$WORK/proxy.log" "$WORK/reverse_proxy" --listen 127.0.0.1:0 \
        --upstream "http://$ORIGIN_ADDR" --memory-budget "$BUDGET" --stats-path "$STATS"
    proxy=$PID proxy_addr=$ADDR
    port=${proxy_addr##*:}
    # The connections, their buffers and the runtime's threads first: not the responses' cost.
    python3 "$WORK/fill.py" "$port" "$COUNT" "$((COUNT + 200))" "$CONNECTIONS"
    stats "$proxy_addr" >/dev/null
    read -r _ base_weight <<<"$(stats "$proxy_addr" | tr '=' ' ' | awk '{ print $2, $4 }')"
    empty=$(rss_kib "$proxy")
    python3 "$WORK/fill.py" "$port" 0 "$COUNT" "$CONNECTIONS"
    sleep 1
    read -r entries weight <<<"$(stats "$proxy_addr" | tr '=' ' ' | awk '{ print $2, $4 }')"
    full=$(rss_kib "$proxy")
    python3 - "$run" "$empty" "$full" "$entries" "$weight" "$base_weight" "$COUNT" <<'PY'
import sys
run, empty, full, entries, weight, base, count = (int(a) for a in sys.argv[1:])
added = (full - empty) * 1024
stored = weight - base
print(f"{run:<4} {empty / 1024:<10.1f} {full / 1024:<10.1f} {added / count:<12.0f} "
      f"{weight / 2**20:<14.1f} {stored / count:<14.0f} {stored / added:.3f}"
      f"   ({entries} entries)")
PY
    kill "$proxy"
    wait "$proxy" 2>/dev/null || true
done
