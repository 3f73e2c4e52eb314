#!/usr/bin/env bash
# Clients that never read: does what the proxy reads ahead for them stay within its budget?
# examples/reverse_proxy --memory-budget in front of benches/tools/origin --chunked-bytes (every URL
# a cacheable body of BODY bytes, chunked); CONNECTIONS connections each ask for a distinct URL,
# one every PAUSE seconds, with a 4 KiB receive buffer, and never read. Prints the proxy's RSS
# once it stops growing, with caching (the origin's max-age=3600) and without (no-store: the
# same connections passed through, the baseline), and the target: the baseline
# + 1.3 x budget + 40 MiB.
#
# As root, each run has a network namespace of its own whose loopback has an Ethernet MTU
# (1500), as clients over a network see: on the default 64 KiB-MTU loopback, the kernel's socket
# buffers take about 1 MiB per idle connection, outside the process, and hide what the process
# holds. Every server binds an ephemeral loopback port.
#
# Usage: benches/idle_readers.sh
#   env: BUDGET=67108864 (bytes)  CONNECTIONS=400  BODY=1000000 (bytes)  PAUSE=0.02 (s)
#        BIN_DIR (a directory with reverse_proxy and origin already built; default: build them)
#        needs root (each case runs in a network namespace of its own)
set -euo pipefail
cd "$(dirname "$0")/.."

export BUDGET=${BUDGET:-67108864} CONNECTIONS=${CONNECTIONS:-400} BODY=${BODY:-1000000}
export PAUSE=${PAUSE:-0.02}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release --example reverse_proxy --bin origin >&2
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    # Copies: a build in a shared target directory cannot swap the binaries mid-run.
    cp "$TARGET_DIR/release/examples/reverse_proxy" "$TARGET_DIR/release/origin" "$WORK/"
else
    cp "$BIN_DIR/reverse_proxy" "$BIN_DIR/origin" "$WORK/"
fi
export WORK

cat >"$WORK/clients.py" <<'EOF'
import socket, sys, time

port, n, pid, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

clients = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Set before connecting, so the window stays small: what is not read stays in the proxy.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /idle/{i} HTTP/1.1\r\nHost: bench.example\r\n\r\n".encode())
    clients.append(s)
    time.sleep(pause)
# Until the RSS has not moved by 1 MiB for 2 s (at most 60 s).
last, still = -1.0, 0
for _ in range(240):
    time.sleep(0.25)
    now = rss_mib()
    still = still + 1 if abs(now - last) < 1 else 0
    last = now
    if still >= 8:
        break
print(f"{now:.1f}")
EOF

# Prints the proxy's RSS in MiB with CONNECTIONS idle clients, the origin sending Cache-Control $1.
run_one() {
    local dir
    dir=$(mktemp -d -p "$WORK")
    "$WORK/origin" --listen 127.0.0.1:0 --cache-control "$1" --chunked-bytes "$BODY" \
        >"$dir/origin.log" 2>&1 &
    local origin=$!
    until grep -qs listening "$dir/origin.log"; do sleep 0.1; done
    local upstream
    upstream=$(grep -o 'http://[0-9.:]*' "$dir/origin.log")
    "$WORK/reverse_proxy" --listen 127.0.0.1:0 --upstream "$upstream" --memory-budget "$BUDGET" \
        >"$dir/proxy.log" 2>&1 &
    local proxy=$!
    until grep -qs proxying "$dir/proxy.log"; do sleep 0.1; done
    local port
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/proxy.log" | head -1 | sed 's/.*://')
    python3 "$WORK/clients.py" "$port" "$CONNECTIONS" "$proxy" "$PAUSE"
    kill "$proxy" "$origin"
    wait "$proxy" "$origin" 2>/dev/null || true
}
export -f run_one

measure() {
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
        unshare -n bash -c "ip link set lo mtu 1500 && ip link set lo up && ulimit -n 20000 &&
            run_one '$1'"
    else
        ulimit -n 20000 2>/dev/null || true
        run_one "$1"
    fi
}

cached=$(measure max-age=3600)
baseline=$(measure no-store)
target=$(python3 -c "print(f'{$baseline + 1.3 * $BUDGET / 2**20 + 40:.1f}')")
echo "$CONNECTIONS idle clients, $BODY-byte chunked bodies, budget $BUDGET bytes:"
echo "  RSS caching: $cached MiB; no-store (baseline): $baseline MiB; target: $target MiB"
