#!/usr/bin/env bash
# HOOKD_CMD for ../shared/bench/{compare,run}.sh: maps the bench environment onto
# hookd's HOOKD_<SECTION>_<KEY> overrides and execs hookd (so its PID is the one
# measured). Extra NAME=VALUE arguments are passed on as environment, e.g.
# HOOKD_DELIVERY_THREADS=4. Everything else is config/hookd.conf as shipped.
root=$(cd "$(dirname "$0")/.." && pwd)
HOOKD=${HOOKD:-$root/build/hookd} CONF=${CONF:-$root/config/hookd.conf}
ca=()
[ -n "${BENCH_CA_FILE:-}" ] && ca=(HOOKD_DELIVERY_CA_FILE="$BENCH_CA_FILE")
exec env HOOKD_KAFKA_BROKERS="$BENCH_BROKERS" HOOKD_KAFKA_TOPIC="$BENCH_TOPIC" \
    HOOKD_KAFKA_GROUP="$BENCH_GROUP" HOOKD_DELIVERY_ALLOW_CIDRS=127.0.0.0/8 \
    HOOKD_SIGNING_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
    HOOKD_ADMIN_LISTEN=127.0.0.1:0 HOOKD_LOG_LEVEL=warn "${ca[@]}" "$@" "$HOOKD" -c "$CONF"
