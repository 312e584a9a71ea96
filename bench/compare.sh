#!/usr/bin/env bash
# hookd's headline bench: the shared peer bench (../shared/bench/compare.sh: hookd,
# the Node peer and the wrk ceiling, interleaved, same sink) on this build, once
# over HTTP/1.1 and once over HTTPS (the sink's TLS listener, h2 by ALPN), then a
# 1/2/4 delivery-thread table with hookd's CPU per 1000 jobs.
#
# usage: bench/compare.sh [N [PARTITIONS [ROUNDS]]]     (default 200000 16 3)
#   BENCH_DIR   the shared bench (default ../shared/bench, else /work/shared/bench)
#   SKIP        any of "plain tls scaling" to leave out
#   HOOKD       the hookd binary (default build/hookd), e.g. an older build for a
#               before/after run in the same session
# Every hookd run also prints its CPU (utime+stime) per 1000 jobs; the plain and TLS
# sections end with their median and the floor line (wrk's own CPU per request).
# Build first (scripts/build). Quote ratios from one run: the machine is shared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-200000} parts=${2:-16} rounds=${3:-3}
bench=${BENCH_DIR:-$root/../shared/bench}
[ -x "$bench/compare.sh" ] || bench=/work/shared/bench
[ -x "$bench/compare.sh" ] || { echo "shared bench not found; set BENCH_DIR" >&2; exit 2; }
export HOOKD=${HOOKD:-$root/build/hookd}
[ -x "$HOOKD" ] || { echo "$HOOKD missing: run scripts/build" >&2; exit 2; }
cmd=("$root/bench/hookd-bench.sh")
cpu_dir=$(mktemp -d)
trap 'rm -rf "$cpu_dir"' EXIT

# Samples the CPU ticks of every hookd process of this bench into
# $cpu_dir/<pid> (the last sample before it exits is its total) until stopped.
cpu_watch() {
    while :; do
        for pid in $(pgrep -f "^$HOOKD -c" || true); do
            t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) && echo "$t" > "$cpu_dir/$pid"
        done
        sleep 0.1
    done
}
# Median CPU ms per 1000 jobs over the hookd runs sampled since the last call.
cpu_report() {
    local hz; hz=$(getconf CLK_TCK)
    cat "$cpu_dir"/* 2>/dev/null | awk -v hz="$hz" -v n="$n" '{ print $1 * 1000 / hz / (n / 1000) }' |
        sort -n | awk '{ v[NR] = $1; s = s sprintf(" %.1f", $1) }
            END { if (NR) printf "hookd CPU ms per 1000 jobs:%s (median %.1f)\n", s,
                  NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
    rm -f "$cpu_dir"/*
}
# The CPU floor of the HTTP exchange itself on this machine, in the same run:
# wrk -t1 -c64 (the ceiling's client: HTTP and nothing else, no Kafka, no JSON,
# no signing) against the same nginx sink for WRK_DURATION, with the CPU
# (utime+stime from /proc) of wrk and of the sink's worker per 1000 requests.
# hookd's CPU per job cannot go below wrk's per request: it makes the same
# send and receive, and does the job's work on top. BENCH_TLS=1 measures it over
# the TLS listener. Then the same through libcurl alone (curl_floor): the
# difference to wrk is libcurl's own cost per request.
floor() {
    local port=${BENCH_SINK_PORT:-18080} work; work=$(mktemp -d)
    "$bench/sink.sh" start "$port" "$work/sink.log"
    local url=http://127.0.0.1:$port/hook
    [ -n "${BENCH_TLS:-}" ] && url=https://127.0.0.1:$((port + 1))/hook
    local ngx; ngx=$(pgrep -P "$(cat "/tmp/bench-sink-$port/nginx.pid")" | head -1)
    local n0; n0=$(awk '{ print $14 + $15 }' "/proc/$ngx/stat")
    # wrk's whole CPU, exit included: the children's times of the shell that waited for it.
    local wt; wt=$(sh -c 'wrk -t1 -c64 -d"$1" -s "$2" "$3" > "$4"; awk "{ print \$16 + \$17 }" /proc/$$/stat' \
        sh "${WRK_DURATION:-5s}" "$bench/wrk_post.lua" "$url" "$work/wrk.out")
    local n1; n1=$(awk '{ print $14 + $15 }' "/proc/$ngx/stat")
    awk -v wt="$wt" -v nt=$((n1 - n0)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ { n = $1 } /Requests\/sec/ { rate = $2 }
        END { if (n > 0) printf "floor: wrk -t1 -c64 n=%d rate=%.0f/s wrk_cpu_ms_per_1000=%.1f sink_cpu_ms_per_1000=%.1f\n",
              n, rate, wt * 1000 / hz / (n / 1000), nt * 1000 / hz / (n / 1000) }' "$work/wrk.out"
    # The same exchange through libcurl alone (bench/curl_floor.c: one thread, 64
    # in flight, socket API + epoll like hookd's delivery threads, nothing else).
    local cf; cf=$(dirname "$HOOKD")/curl_floor
    if [ -x "$cf" ]; then
        printf 'floor: '
        CURL_FLOOR_CA_FILE=/tmp/bench-sink-$port/cert.pem "$cf" "$url" "${CURL_FLOOR_REQUESTS:-300000}" 64 || true
    fi
    "$bench/sink.sh" stop "$port" > /dev/null
    rm -rf "$work"
}
cpu_watch & watcher=$!
trap 'kill $watcher 2>/dev/null; rm -rf "$cpu_dir"' EXIT
skip=" ${SKIP:-} "
echo "# hookd bench $(date -Is) $(nproc) CPUs, $(git -C "$root" rev-parse --short HEAD 2>/dev/null), $HOOKD"

if [[ $skip != *" plain "* ]]; then
    echo "## HTTP/1.1"
    "$bench/compare.sh" "$n" "$parts" "$rounds" -- "${cmd[@]}"
    sleep 0.3; cpu_report; floor
fi
if [[ $skip != *" tls "* ]]; then
    echo "## HTTPS (TLS, h2 by ALPN)"
    BENCH_TLS=1 "$bench/compare.sh" "$n" "$parts" "$rounds" -- "${cmd[@]}"
    sleep 0.3; cpu_report; BENCH_TLS=1 floor
fi

# One run with hookd's CPU per 1000 jobs (bench/run-cpu.sh).
run_cpu() {
    local name=$1; shift
    BENCH_DIR=$bench "$root/bench/run-cpu.sh" "$name" "$n" "$parts" -- "${cmd[@]}" "$@"
}

if [[ $skip != *" scaling "* ]]; then
    echo "## delivery threads (steady deliveries/s, HTTP/1.1, one run each, interleaved)"
    for _ in $(seq "${SCALING_ROUNDS:-1}"); do
        for t in 1 2 4; do run_cpu "threads=$t" HOOKD_DELIVERY_THREADS=$t; done
    done
fi
