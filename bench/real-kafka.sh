#!/usr/bin/env bash
# hookd's delivery rate on a real Apache Kafka broker next to the mock cluster,
# in one run, on the same nginx sink, with the same N and partitions.
#
#   bench/real-kafka.sh [N] [PARTITIONS] [ROUNDS]      (100000 8 3)
#
# Each round runs ../shared/bench/run.sh twice: once on its mock broker, once
# on a 1-node Apache Kafka 4.1.1 started here with scripts/kafka (stopped at the
# end). For the real run, run.sh's broker command (MOCKBROKER) is a stand-in
# that (re)creates jobs, jobs.retry and jobs.dlq on the real cluster, prints its
# bootstrap and waits; run.sh then loads N jobs with kcat, starts hookd, times
# the deliveries at the sink and reads the group's committed offsets, the same
# way for both. Rounds alternate mock and real so drift on this shared machine
# hits both alike; the summary gives the medians of steady_rate and their ratio.
#   BENCH_SHARED=DIR   the shared bench folder (default ../shared/bench, found
#                      next to this repo or one level up)
#   HOOKD_CMD          what run.sh starts (default: shared hookd-bench.example.sh
#                      on build/hookd and config/hookd.conf)
# Lines and summary also go to $BENCH_OUT (default /tmp/hookd-bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-100000} parts=${2:-8} rounds=${3:-3}

shared=${BENCH_SHARED:-}
for d in "$root/../shared/bench" "$root/../../shared/bench"; do
	[ -n "$shared" ] || { [ -x "$d/run.sh" ] && shared=$(cd "$d" && pwd); } || true
done
[ -n "$shared" ] && [ -x "$shared/run.sh" ] || { echo "bench: no shared bench folder (set BENCH_SHARED)" >&2; exit 1; }
[ -x build/hookd ] || { echo "bench: build hookd first (scripts/build)" >&2; exit 1; }
hookd_cmd=("$shared/hookd-bench.example.sh")
[ -z "${HOOKD_CMD:-}" ] || read -r -a hookd_cmd <<<"$HOOKD_CMD"

out_dir=${BENCH_OUT:-/tmp/hookd-bench}
mkdir -p "$out_dir"
out=$out_dir/real-kafka-$(date +%Y%m%d-%H%M%S).txt
work=$(mktemp -d /tmp/hookd-bench-real.XXXXXX)
kdir=""
cleanup() {
	[ -z "$kdir" ] || scripts/kafka down "$kdir" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# A sink port of our own: other benches may be using run.sh's default.
export BENCH_SINK_PORT=${BENCH_SINK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}

echo "== starting a 1-node Apache Kafka (scripts/kafka up)" >&2
scripts/kafka up >"$work/up.env"
kdir=$(sed -n 's/^KAFKA_DIR=//p' "$work/up.env")
boot=$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$work/up.env")

# run.sh's broker for the real rounds. Deleting a topic also drops the group's
# committed offsets for it, so each round starts from an empty group "bench".
cat >"$work/realbroker" <<EOF
#!/usr/bin/python3
import signal, sys, time
from confluent_kafka.admin import AdminClient, NewTopic
boot, topic, parts = "$boot", sys.argv[1], int(sys.argv[2])
names = [topic, topic + ".retry", topic + ".dlq"]
admin = AdminClient({"bootstrap.servers": boot})
def present():
    return set(names) & set(admin.list_topics(timeout=10).topics)
if present():
    for f in admin.delete_topics(sorted(present()), operation_timeout=30).values():
        f.result()
deadline = time.time() + 60
while present() and time.time() < deadline:
    time.sleep(0.2)
while True:  # a topic just deleted can refuse a create for a moment
    try:
        for f in admin.create_topics([NewTopic(t, parts if t != topic + ".dlq" else 1, 1)
                                      for t in sorted(set(names) - present())],
                                     operation_timeout=30).values():
            f.result()
        break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
while True:  # every partition led before run.sh produces
    md = admin.list_topics(topic, timeout=10).topics[topic]
    if len(md.partitions) == parts and all(p.leader >= 0 for p in md.partitions.values()):
        break
    time.sleep(0.2)
print(boot, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
EOF
chmod +x "$work/realbroker"

{
	echo "# $(date -Is) n=$n partitions=$parts rounds=$rounds cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)" \
		"kafka=$(sed -n 's/^LIB=.*kafka-\([0-9.]*\)-.*/\1/p' "$kdir/cluster.env") librdkafka=$(/usr/bin/python3 -c 'import confluent_kafka; print(confluent_kafka.libversion()[0])')"
	for _ in $(seq "$rounds"); do
		"$shared/run.sh" mock "$n" "$parts" -- "${hookd_cmd[@]}" || true
		touch "$work/realbroker" # run.sh rebuilds its broker when mockbroker.c is newer
		MOCKBROKER=$work/realbroker "$shared/run.sh" real "$n" "$parts" -- "${hookd_cmd[@]}" || true
	done
} | tee "$out"

median() { # NAME FIELD -> median of FIELD over NAME's lines
	grep "^$1 " "$out" | tr ' ' '\n' | sed -n "s|^$2=\([0-9.]*\).*|\1|p" | sort -n |
		awk '{ v[NR] = $1 } END { if (!NR) { print 0; exit } print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
m=$(median mock steady_rate) r=$(median real steady_rate)
mf=$(median mock first) rf=$(median real first)
{
	echo
	printf 'median steady deliveries/s: mock %s  real Kafka %s\n' "$m" "$r"
	printf 'median start to first delivery: mock %ss  real Kafka %ss\n' "$mf" "$rf"
	awk -v m="$m" -v r="$r" 'BEGIN { printf "ratio real/mock %.2f\n", (m > 0 ? r / m : 0) }'
} | tee -a "$out"
