#!/usr/bin/env bash
# One run of the shared bench's run.sh with hookd's CPU: prints run.sh's line
# plus cpu_ms_per_1000=, hookd's utime+stime (sampled from /proc every 0.1 s
# until it exits: start-up, intake and signing included) per 1000 jobs.
#
# usage: bench/run-cpu.sh NAME N PARTITIONS -- HOOKD_CMD...
#   HOOKD   the hookd binary HOOKD_CMD execs (its process is the one sampled)
#   BENCH_DIR as for bench/compare.sh
# Used by bench/compare.sh (thread table) and bench/libcurl-ab.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 5 ] && [ "$4" = "--" ] || { echo "usage: $0 NAME N PARTITIONS -- HOOKD_CMD..." >&2; exit 2; }
name=$1 n=$2 parts=$3; shift 4
bench=${BENCH_DIR:-$root/../shared/bench}
[ -x "$bench/run.sh" ] || bench=/work/shared/bench
HOOKD=${HOOKD:-$root/build/hookd}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bench/run.sh" "$name" "$n" "$parts" -- "$@" > "$out" 2>&1 &
rp=$! pid='' ticks=0
while kill -0 "$rp" 2>/dev/null; do
    [ -z "$pid" ] && pid=$(pgrep -f "^$HOOKD -c" | head -1 || true)
    if [ -n "$pid" ] && t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null); then
        ticks=$t
    fi
    sleep 0.1
done
wait "$rp" || true
awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" \
    '/ n=/ { printf "%s cpu_ms_per_1000=%.1f\n", $0, t * 1000 / hz / (n / 1000) }' "$out"
