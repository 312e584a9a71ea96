#!/usr/bin/env bash
# Does a newer libcurl make hookd faster? The same hookd binary, interleaved runs of
# the shared bench's run.sh (mock broker, nginx sink), once on the system's libcurl
# and once on the newest Debian offers for this release (bookworm-backports),
# loaded with LD_LIBRARY_PATH: libcurl.so.4 keeps its ABI, so no rebuild. Prints
# each run's line with hookd's CPU per 1000 jobs, then medians.
#
# usage: bench/libcurl-ab.sh [N [PARTITIONS [ROUNDS]]]     (default 200000 16 3)
#   BENCH_TLS=1      over the sink's TLS listener
#   HTTP2=auto       delivery.http2 for both (default: the shipped config's)
#   SUITE=bookworm-backports   where the other libcurl comes from
# Needs network access to deb.debian.org; touches no system apt state (its own
# lists and cache in a temp dir). Build first (scripts/build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-200000} parts=${2:-16} rounds=${3:-3}
bench=${BENCH_DIR:-$root/../shared/bench}
[ -x "$bench/run.sh" ] || bench=/work/shared/bench
HOOKD=${HOOKD:-$root/build/hookd}
[ -x "$HOOKD" ] || { echo "$HOOKD missing: run scripts/build" >&2; exit 2; }
suite=${SUITE:-bookworm-backports}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The other libcurl, fetched with apt into the temp dir only.
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/lib"
echo "deb http://deb.debian.org/debian $suite main" > "$tmp/sources.list"
apt_opts=(-q -o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Get::List-Cleanup=0)
apt-get "${apt_opts[@]}" update > "$tmp/apt.log" 2>&1
(cd "$tmp" && apt-get "${apt_opts[@]}" download "libcurl4/$suite" >> "$tmp/apt.log" 2>&1)
dpkg-deb -x "$tmp"/libcurl4_*.deb "$tmp/lib"
newlib=$(dirname "$(find "$tmp/lib" -name 'libcurl.so.4' | head -1)")
new_version=$(dpkg-deb -f "$tmp"/libcurl4_*.deb Version)
sys_version=$(dpkg-query -W -f '${Version}' libcurl4)
LD_LIBRARY_PATH=$newlib ldd "$HOOKD" | grep -q "$newlib/libcurl.so.4" ||
    { echo "hookd does not load $newlib/libcurl.so.4" >&2; exit 1; }
echo "# libcurl A/B $(date -Is) $(nproc) CPUs, $(git -C "$root" rev-parse --short HEAD 2>/dev/null): system $sys_version vs $suite $new_version, n=$n partitions=$parts tls=${BENCH_TLS:-0} http2=${HTTP2:-config}"

http2=()
[ -n "${HTTP2:-}" ] && http2=(HOOKD_DELIVERY_HTTP2="$HTTP2")
out=$tmp/runs.txt
one() {  # NAME LIBDIR: run.sh's line plus hookd's CPU per 1000 jobs (bench/run-cpu.sh)
    env ${2:+LD_LIBRARY_PATH=$2} HOOKD="$HOOKD" BENCH_DIR="$bench" "$root/bench/run-cpu.sh" "$1" "$n" "$parts" -- \
        "$root/bench/hookd-bench.sh" "${http2[@]}" | tee -a "$out"
}
for _ in $(seq "$rounds"); do
    one system ""
    one "$suite" "$newlib"
done
median() {  # NAME FIELD
    grep "^$1 " "$out" | tr ' ' '\n' | sed -n "s|^$2=\([0-9.]*\).*|\1|p" | sort -n |
        awk '{ v[NR] = $1 } END { if (!NR) { print 0; exit } print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
for name in system "$suite"; do
    printf 'median %-20s steady %s/s  cpu_ms_per_1000 %s  dup %s\n' "$name" \
        "$(median "$name" steady_rate)" "$(median "$name" cpu_ms_per_1000)" "$(median "$name" dup)"
done
