#!/usr/bin/env bash
# hookd's headline bench: the shared peer bench (../shared/bench/compare.sh: hookd,
# the Node peer and the wrk ceiling, interleaved, same sink) on this build, once
# over HTTP/1.1 and once over HTTPS (the sink's TLS listener, h2 by ALPN), then a
# 1/2/4 delivery-thread table with hookd's CPU per 1000 jobs.
#
# usage: bench/compare.sh [N [PARTITIONS [ROUNDS]]]     (default 200000 16 3)
#   BENCH_DIR   the shared bench (default ../shared/bench, else /work/shared/bench)
#   SKIP        any of "plain tls scaling" to leave out
# Build first (scripts/build). Quote ratios from one run: the machine is shared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-200000} parts=${2:-16} rounds=${3:-3}
bench=${BENCH_DIR:-$root/../shared/bench}
[ -x "$bench/compare.sh" ] || bench=/work/shared/bench
[ -x "$bench/compare.sh" ] || { echo "shared bench not found; set BENCH_DIR" >&2; exit 2; }
[ -x "$root/build/hookd" ] || { echo "build/hookd missing: run scripts/build" >&2; exit 2; }
cmd=("$root/bench/hookd-bench.sh")
skip=" ${SKIP:-} "
echo "# hookd bench $(date -Is) $(nproc) CPUs, $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"

if [[ $skip != *" plain "* ]]; then
    echo "## HTTP/1.1"
    "$bench/compare.sh" "$n" "$parts" "$rounds" -- "${cmd[@]}"
fi
if [[ $skip != *" tls "* ]]; then
    echo "## HTTPS (TLS, h2 by ALPN)"
    BENCH_TLS=1 "$bench/compare.sh" "$n" "$parts" "$rounds" -- "${cmd[@]}"
fi

# One run; prints run.sh's line plus hookd's CPU (utime+stime, sampled from /proc
# until it exits, start-up, intake and signing included) per 1000 jobs.
run_cpu() {
    local name=$1; shift
    local out; out=$(mktemp)
    "$bench/run.sh" "$name" "$n" "$parts" -- "${cmd[@]}" "$@" > "$out" 2>&1 &
    local rp=$! pid='' ticks=0 t
    while kill -0 "$rp" 2>/dev/null; do
        [ -z "$pid" ] && pid=$(pgrep -f "^$root/build/hookd -c" | head -1 || true)
        if [ -n "$pid" ] && t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null); then
            ticks=$t
        fi
        sleep 0.1
    done
    wait "$rp" || true
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" \
        '/ n=/ { printf "%s cpu_ms_per_1000=%.1f\n", $0, t * 1000 / hz / (n / 1000) }' "$out"
    rm -f "$out"
}

if [[ $skip != *" scaling "* ]]; then
    echo "## delivery threads (steady deliveries/s, HTTP/1.1, one run each, interleaved)"
    for _ in $(seq "${SCALING_ROUNDS:-1}"); do
        for t in 1 2 4; do run_cpu "threads=$t" HOOKD_DELIVERY_THREADS=$t; done
    done
fi
