#!/usr/bin/env bash
# The catalog's hot endpoint (GET /courses/featured) under wrk, in several set-ups, on loopback:
#   no cache            the catalog with --no-cache: every request runs the SQLite query
#   CacheLayer memory   the catalog as shipped: CacheLayer in process
#   CacheLayer Redis    the catalog with --redis (tiered memory + Redis), when redis-server is installed
#   nginx proxy_cache   the uncached catalog behind nginx's proxy_cache (the usual alternative)
#   same bytes, static  the response CacheLayer serves for the endpoint (status, headers and
#                       body recorded with curl from the memory set-up), served from static memory
#                       by benches/tools/static_copy.rs through axum::serve, as the catalog serves: no
#                       cache, no database, no histogram. The ceiling of any cache inside this
#                       server for this response
#   ceiling             the uncached catalog's GET /healthz (two static bytes, merged outside
#                       every layer: no cache lookup, no latency histogram, no database): what
#                       this server answers at best on this machine
# Two phases, each with its own table:
#   all cores   servers and wrk share every core (wrk -t$THREADS, nginx worker_processes auto)
#   per core    each server pinned to core $SERVER_CORE (taskset; nginx worker_processes 1, the
#               catalog runs a current-thread tokio runtime when it may use one CPU), wrk -t1
#               pinned to core $CLIENT_CORE:
#               requests per second per server core. The origin and redis-server are pinned to
#               the server core too (on a hit neither is called). Skipped on fewer than 2 cores
#               or with PER_CORE=0.
# Runs are interleaved (set-up A, B, C, D, then again) so that noise from the machine hits
# every set-up alike; the table shows the median of RUNS runs. It also shows the server's CPU
# time per request (utime + stime of the server process and its children, nginx's workers
# included; not the origin or redis-server, which a hit does not call), and nginx's CPU time
# per request divided by each row's: a per-CPU ratio that other work on the machine moves far
# less than it moves requests/s.
#
# Needs: wrk and nginx (Debian: apt-get install wrk nginx), redis-server for the Redis row,
# taskset (util-linux) for the per-core phase.
# Usage: benches/compare.sh  (env: RUNS=3 DURATION=5s CONNECTIONS=32 THREADS=2 PER_CORE=1
#                             SERVER_CORE=0 CLIENT_CORE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PER_CORE=${PER_CORE:-1}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
PATH_UNDER_TEST=/courses/featured
if [ "$PER_CORE" = 1 ] && { [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; }; then
    echo "skipping the per-core phase: needs 2 cores and taskset" >&2
    PER_CORE=0
fi

for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release --example catalog --bin static_copy >&2
TARGET_DIR=${CARGO_TARGET_DIR:-target}
CATALOG="$TARGET_DIR/release/examples/catalog"
STATIC_COPY="$TARGET_DIR/release/static_copy"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port the kernel just handed out and released: free now (nginx cannot take port 0).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts server binary $2 as set-up $1 with flags $3... (under the PIN prefix); sets ADDR[$1] to
# its address. Not run in a subshell, so that its pid reaches the clean-up.
start_server() {
    local setup=$1 binary=$2
    shift 2
    local log="$WORK/server-${#PIDS[@]}.log"
    "${PIN[@]}" "$binary" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    SERVER_PID[$setup]=$pid
    for _ in $(seq 100); do
        if grep -q 'listening on' "$log"; then
            ADDR[$setup]=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$setup: $(tr '\n' ' ' <"$log")" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "error: $setup did not start" >&2
    return 1
}

start_catalog() {
    start_server "$1" "$CATALOG" "${@:2}"
}

# One phase: starts every set-up (under PIN), measures them with WRK, prints the table titled
# $1, and stops its processes.
phase() {
local title=$1
local first_pid=${#PIDS[@]}
ADDR=()
start_catalog "no cache" --no-cache
start_catalog "CacheLayer memory"
SETUPS=("no cache" "CacheLayer memory")

if command -v redis-server >/dev/null; then
    REDIS_PORT=$(free_port)
    "${PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
    PIDS+=($!)
    sleep 0.3
    if start_catalog "CacheLayer Redis" --redis "redis://127.0.0.1:$REDIS_PORT"; then
        SETUPS+=("CacheLayer Redis")
    else
        echo "skipping CacheLayer Redis (above: why)" >&2
    fi
else
    echo "skipping CacheLayer Redis: no redis-server" >&2
fi

# nginx in front of the uncached catalog, caching what it is told to for as long as the
# catalog's own Cache-Control says (s-maxage=30), with the equivalents of the layer's
# coalescing (proxy_cache_lock) and stale-while-revalidate (use_stale updating). Access logs
# are off on both sides. nginx's other settings are its defaults; Debian's nginx.conf adds
# `sendfile on; tcp_nopush on;`, which made hits slower here, so they are left out.
NGINX_PORT=$(free_port)
rm -rf "$WORK/nginx"
mkdir -p "$WORK/nginx/cache" "$WORK/nginx/tmp"
# nginx's workers drop root for an unprivileged user that must reach the cache directory.
chmod a+x "$WORK"
chmod -R a+rwx "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    proxy_cache_path $WORK/nginx/cache keys_zone=catalog:10m max_size=64m;
    upstream catalog { server ${ADDR[no cache]}; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://catalog;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache catalog;
            proxy_cache_lock on;
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
            # Used only if the catalog's Cache-Control were not understood; same 30 s.
            proxy_cache_valid 200 30s;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
"${PIN[@]}" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
SERVER_PID[nginx proxy_cache]=$!
sleep 0.5
ADDR[nginx proxy_cache]=127.0.0.1:$NGINX_PORT
SETUPS+=("nginx proxy_cache")

# The memory set-up's hit, recorded (the first request stores it) and served statically.
curl -fsS -o /dev/null "http://${ADDR[CacheLayer memory]}$PATH_UNDER_TEST"
curl -fsS -D "$WORK/hit.head" -o "$WORK/hit.body" "http://${ADDR[CacheLayer memory]}$PATH_UNDER_TEST"
grep -qi '^cache-status:.*hit' "$WORK/hit.head" || { echo "error: no hit to record:" >&2; cat "$WORK/hit.head" >&2; exit 1; }
start_server "same bytes, static" "$STATIC_COPY" --head "$WORK/hit.head" --body "$WORK/hit.body"
SETUPS+=("same bytes, static")

URL=()
for setup in "${SETUPS[@]}"; do
    URL[$setup]="${ADDR[$setup]}$PATH_UNDER_TEST"
done
URL[ceiling]="${ADDR[no cache]}/healthz"
SERVER_PID[ceiling]=${SERVER_PID[no cache]}
SETUPS+=("ceiling")

# Warm every set-up: the first request fills the caches.
for setup in "${SETUPS[@]}"; do
    curl -fsS -o /dev/null "http://${URL[$setup]}"
done
# nginx must actually be caching, or the comparison is meaningless.
curl -fsS -o /dev/null -D "$WORK/h" "http://${ADDR[nginx proxy_cache]}$PATH_UNDER_TEST"
grep -qi '^x-cache-status: HIT' "$WORK/h" || { echo "error: nginx is not caching:" >&2; cat "$WORK/h" >&2; exit 1; }

# CPU ticks (utime + stime) of process $1 and its child processes (nginx's workers).
cpu_ticks() {
    local pid total=0 t
    for pid in "$1" $(ps -o pid= --ppid "$1"); do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# wrk's output → "requests/s p50_ms p99_ms requests".
measure() {
    "${WRK[@]}" -c"$CONNECTIONS" -d"$DURATION" --latency "http://$1" | awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000;
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0;
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000;
            return v;
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        $2 == "requests" && $3 == "in" { n = $1 }
        END { printf "%s %.3f %.3f %s\n", rps, p50, p99, n }'
}

RESULTS=()
# Other work on the machine skews every number: say how busy it was.
local load_before
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
    for setup in "${SETUPS[@]}"; do
        local before after
        before=$(cpu_ticks "${SERVER_PID[$setup]}")
        result=$(measure "${URL[$setup]}")
        after=$(cpu_ticks "${SERVER_PID[$setup]}")
        # The server's CPU time per request (µs): steadier than requests/s on a busy machine.
        result=$(echo "$result" | awk -v t=$((after - before)) -v hz="$CLK_TCK" \
            '{ printf "%s %s %s %.2f\n", $1, $2, $3, t * 1000000 / hz / $4 }')
        echo "$title, run $run/$RUNS  $setup: $result (req/s p50_ms p99_ms server_cpu_us/req)" >&2
        RESULTS[$setup]+="$result"$'\n'
    done
done

echo
echo "$title: GET $PATH_UNDER_TEST (ceiling: GET /healthz), ${WRK[*]} -c$CONNECTIONS -d$DURATION, median of $RUNS interleaved runs, $(nproc) cores, load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
nginx_rps=$(printf '%s' "${RESULTS[nginx proxy_cache]}" | awk '{ print $1 }' | median)
ceiling_rps=$(printf '%s' "${RESULTS[ceiling]}" | awk '{ print $1 }' | median)
nginx_cpu=$(printf '%s' "${RESULTS[nginx proxy_cache]}" | awk '{ print $4 }' | median)
printf '| %-18s | %12s | %10s | %10s | %9s | %10s | %11s | %12s |\n' "set-up" "requests/s" "p50 ms" "p99 ms" "vs nginx" "vs ceiling" "CPU µs/req" "nginx CPU /"
printf '| %-18s | %12s | %10s | %10s | %9s | %10s | %11s | %12s |\n' "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
for setup in "${SETUPS[@]}"; do
    rps=$(printf '%s' "${RESULTS[$setup]}" | awk '{ print $1 }' | median)
    p50=$(printf '%s' "${RESULTS[$setup]}" | awk '{ print $2 }' | median)
    p99=$(printf '%s' "${RESULTS[$setup]}" | awk '{ print $3 }' | median)
    ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2fx", a / b }')
    of_ceiling=$(awk -v a="$rps" -v b="$ceiling_rps" 'BEGIN { printf "%.1f%%", 100 * a / b }')
    cpu=$(printf '%s' "${RESULTS[$setup]}" | awk '{ print $4 }' | median)
    cpu_ratio=$(awk -v a="$nginx_cpu" -v b="$cpu" 'BEGIN { printf "%.2fx", a / b }')
    printf '| %-18s | %12.0f | %10.3f | %10.3f | %9s | %10s | %11.2f | %12s |\n' "$setup" "$rps" "$p50" "$p99" "$ratio" "$of_ceiling" "$cpu" "$cpu_ratio"
done
local i
for ((i = ${#PIDS[@]} - 1; i >= first_pid; i--)); do
    kill "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
done
PIDS=("${PIDS[@]:0:$first_pid}")
}

declare -A ADDR URL RESULTS SERVER_PID
CLK_TCK=$(getconf CLK_TCK)
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

PIN=()
WRK=(wrk -t"$THREADS")
NGINX_WORKERS=auto
phase "all cores"

if [ "$PER_CORE" = 1 ]; then
    PIN=(taskset -c "$SERVER_CORE")
    WRK=(taskset -c "$CLIENT_CORE" wrk -t1)
    NGINX_WORKERS=1
    phase "per core (server on core $SERVER_CORE, wrk on core $CLIENT_CORE)"
fi

