# shellcheck shell=bash
# The real-Kafka steps of scripts/demo (--kafka real), sourced by it: it sets
# work, PG_URL, redis_port, port, port2, SECRET, JOBS, field() and cleanup()
# (which stops replica_pids and runs scripts/kafka down "$kafka_dir").

REPLICAS=3

# Step 2: a 3-node KRaft cluster, the three topics (replication 3,
# min.insync.replicas=2, so one broker may be lost without losing a write),
# then 3 hookd replicas in one group. Replica 0 logs to hookd.log (the file
# the rest of the demo reads the admin port from), replica i to hookd<i>.log.
real_start() {
	echo "== starting a 3-node Apache Kafka with scripts/kafka (fetched with Maven on first use)"
	./scripts/kafka up --nodes 3 >"$work/kafka.env"
	kafka_dir=$(sed -n 's/^KAFKA_DIR=//p' "$work/kafka.env")
	brokers=$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$work/kafka.env")
	local t pids=()
	for t in jobs:6 jobs.retry:6 jobs.dlq:2; do
		./scripts/kafka tool "$kafka_dir" kafka-topics --bootstrap-server "$brokers" --create \
			--topic "${t%%:*}" --partitions "${t#*:}" --replication-factor 3 \
			--config min.insync.replicas=2 >>"$work/topics.log" 2>&1 &
		pids+=($!)
	done
	for t in "${pids[@]}"; do wait "$t" || { cat "$work/topics.log"; exit 1; }; done
	echo "== Kafka at $brokers (dir $kafka_dir): jobs 6, jobs.retry 6, jobs.dlq 2 partitions, RF 3, min.insync.replicas 2"
	# The sink's down window counts from now, not from before the cluster started.
	down_until=$(($(date +%s%3N) + 8000))
	local i log
	for ((i = 0; i < REPLICAS; i++)); do
		log="$work/hookd.log"
		[ "$i" -eq 0 ] || log="$work/hookd$i.log"
		HOOKD_KAFKA_BROKERS=$brokers HOOKD_POSTGRES_URL=$PG_URL HOOKD_REDIS_URL=redis://127.0.0.1:$redis_port \
			HOOKD_DELIVERY_ALLOW_CIDRS=127.0.0.0/8 HOOKD_SIGNING_SECRET=$SECRET HOOKD_LOG_SUMMARY_MS=500 \
			HOOKD_BREAKER_OPEN_MS=2s HOOKD_RETRY_SCHEDULE=250ms,500ms,1s,2s,4s HOOKD_ADMIN_LISTEN=127.0.0.1:0 \
			build/hookd 2>"$log" &
		replica_pids+="${replica_pids:+ }$!"
	done
	for ((i = 0; i < REPLICAS; i++)); do
		log="$work/hookd.log"
		[ "$i" -eq 0 ] || log="$work/hookd$i.log"
		for _ in $(seq 600); do grep -q '"event":"started"' "$log" 2>/dev/null && break; sleep 0.1; done
		grep -q '"event":"started"' "$log" || { echo "replica $i did not start; see $log"; exit 1; }
	done
	echo "== $REPLICAS hookd replicas started (pids $replica_pids), group hookd; logs: $work/hookd*.log"
}

# The latest summary line of each log named (all replicas' when none).
real_summaries() {
	local f
	[ $# -gt 0 ] || set -- "$work"/hookd.log "$work"/hookd[0-9].log
	for f in "$@"; do
		grep '"event":"summary"' "$f" | tail -1 || true
	done
}

# Sum of numeric field $1 over the latest summaries of the logs named after it.
real_sum() {
	local name=$1
	shift
	real_summaries "$@" | grep -o "\"$name\":[0-9.]*" | cut -d: -f2 | awk '{ s += $1 } END { printf "%d", s }'
}

sink_stat() { # FIELD: the sum over both sinks
	echo $(($(field "$(curl -s "http://127.0.0.1:$port/_stats")" "$1") + 0 + $(field "$(curl -s "http://127.0.0.1:$port2/_stats")" "$1") + 0))
}

# Steps 4 and 5: the live line; replica 2 SIGKILLed as soon as deliveries
# have started (the down endpoint's jobs are then still waiting); done when every webhook id that should succeed has, the
# batch has finished and the survivors have nothing in flight and no lag.
real_run() {
	local victim_pid=${replica_pids##* } victim_log="$work/hookd2.log"
	# What should end 2xx: jobs for /ok and the down endpoint (not the ones
	# with a bad id), and the batch items that do not answer 422.
	local expect
	expect=$(($(grep -v '"bad id' "$work/jobs.jsonl" | grep -v '"type":"batch"' | grep -cE '/ok"|/down-until/') +
		BATCH_ITEMS - (BATCH_ITEMS + 27) / 33))
	local start killed_at="" kill_done="" unique=0 lag
	local -a alive=("$work/hookd.log" "$work/hookd1.log" "$work/hookd2.log")
	start=$(date +%s.%N)
	while :; do
		unique=$(sink_stat unique_ok)
		local batch bstatus
		batch=$(curl -s "http://127.0.0.1:$admin_port/v1/batches/demo-batch?tenant=tenant-batch" || true)
		bstatus=$({ echo "$batch" | grep -o '"status":"[a-z_]*"' | cut -d'"' -f4; } || true)
		printf '\r  consumed %5s  delivered %5s  dlq %4s  in flight %4s  %6s/s  unique 2xx %5s/%s  dup %3s  replicas %s  batch %-9.9s' \
			"$(real_sum consumed)" "$(real_sum delivered)" "$(real_sum dead_lettered)" \
			"$(real_sum inflight "${alive[@]}")" "$(real_sum rate "${alive[@]}")" "$unique" "$expect" "$(sink_stat duplicate_ok)" "$(echo "$replica_pids" | wc -w)" "${bstatus:-waiting}"
		if [ -z "$killed_at" ] && [ "$unique" -gt 0 ]; then
			kill -KILL "$victim_pid"
			wait "$victim_pid" 2>/dev/null || true
			replica_pids=${replica_pids% *}
			killed_at=$(date +%s.%N)
			kill_done=$unique
			alive=("$work/hookd.log" "$work/hookd1.log")
			echo
			echo "== SIGKILLed replica 2 (pid $victim_pid) at $unique unique deliveries; replicas 0 and 1 take over its partitions after the session timeout"
		fi
		if [ -n "$killed_at" ] && [ "$unique" -ge "$expect" ] && [ -n "$bstatus" ] && [ "$bstatus" != running ] &&
			[ "$bstatus" != pending ] && [ "$(real_sum inflight "${alive[@]}")" = 0 ] &&
			[ "$(group_lag)" = 0 ]; then
			break
		fi
		for pid in $replica_pids; do
			kill -0 "$pid" 2>/dev/null || { echo; echo "a replica exited early; see $work/hookd*.log"; exit 1; }
		done
		sleep 0.5
	done
	local end
	end=$(date +%s.%N)
	echo

	# Drain and stop the survivors (SIGTERM commits), then Kafka's own tool says
	# what the group has committed.
	local pid
	for pid in $replica_pids; do kill -TERM "$pid"; done
	for pid in $replica_pids; do wait "$pid" || true; done
	replica_pids=""
	lag=$(group_lag)
	local dlq_records
	dlq_records=$(kcat -C -b "$brokers" -t jobs.dlq -e -q -f '%o\n' 2>/dev/null | wc -l)
	local elapsed rate takeover
	elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
	rate=$(awk -v n="$JOBS" -v s="$elapsed" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
	takeover=$(first_assignment_after "$killed_at")

	echo
	echo "== summary (real Kafka: 3 brokers, 3 replicas, one SIGKILLed)"
	printf '  %-34s %8s\n' "webhook jobs produced" "$JOBS"
	printf '  %-34s %8s\n' "batch items" "$BATCH_ITEMS"
	printf '  %-34s %8s\n' "sinks: unique ids delivered" "$unique"
	printf '  %-34s %8s\n' "  expected (2xx by design)" "$expect"
	printf '  %-34s %8s\n' "sinks: duplicates" "$(sink_stat duplicate_ok)"
	printf '  %-34s %8s\n' "sinks: bad signatures" "$(sink_stat bad_signature)"
	printf '  %-34s %8s\n' "dead-letter records (jobs.dlq)" "$dlq_records"
	printf '  %-34s %8s\n' "replica 2 killed at (unique 2xx)" "$kill_done"
	printf '  %-34s %7ss\n' "  its partitions reassigned after" "${takeover:-?}"
	printf '  %-34s %8s\n' "group lag at the end (Kafka's tool)" "$lag"
	printf '  %-34s %7ss\n' "elapsed" "$elapsed"
	printf '  %-34s %6s/s\n' "average rate" "$rate"
	echo
	echo "  Duplicates and extra dead-letter records come from replica 2's window:"
	echo "  jobs it had finished but whose offsets it had not yet committed (hookd"
	echo "  commits finished offsets every second) are consumed again by the replica"
	echo "  that takes the partition over. The receiver dedupes them by webhook-id."
	echo "  Replica 2's last summary before the kill:"
	grep '"event":"summary"' "$victim_log" | tail -1 | sed 's/^/    /' | cut -c1-200
}

# The group's lag on the jobs topic as Kafka's own tool reports it (committed
# offsets against the log end), summed over partitions.
group_lag() {
	./scripts/kafka tool "$kafka_dir" kafka-consumer-groups --bootstrap-server "$brokers" \
		--describe --group hookd 2>/dev/null | awk '$2 == "jobs" { n++; s += ($4 == "-" ? $5 : $6) } END { print (n ? s : "?") }'
}

# Seconds from the kill to the first assignment a survivor logged after it.
first_assignment_after() {
	local t0=$1 f ts best=""
	for f in "$work"/hookd.log "$work"/hookd1.log; do
		while read -r ts; do
			local s
			s=$(date -d "$ts" +%s.%N 2>/dev/null) || continue
			if awk -v s="$s" -v t="$t0" 'BEGIN { exit !(s > t) }'; then
				if [ -z "$best" ] || awk -v s="$s" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$s; fi
				break
			fi
		done < <(grep -E '"event":"(assigned|partitions_assigned|rebalance)' "$f" | grep -o '"ts":"[^"]*"' | cut -d'"' -f4)
	done
	[ -z "$best" ] || awk -v s="$best" -v t="$t0" 'BEGIN { printf "%.1f", s - t }'
}
