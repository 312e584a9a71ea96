#!/usr/bin/env bash
# Installs every Debian package hookd needs to build, test and run the demo.
# Idempotent: asks apt only for what is missing. Keep in step with the Dockerfile.
#   scripts/deps.sh                  everything (build, tests, demo, packaging checks)
#   HOOKD_DEPS=build scripts/deps.sh only what compiling hookd and its tests needs
#                                    (the Dockerfile's build stage)
#   HOOKD_DEPS=kafka scripts/deps.sh only what scripts/kafka needs to fetch and run
#                                    a real Apache Kafka (also part of "all")
set -euo pipefail

build_pkgs=(
	build-essential cmake pkg-config
	librdkafka-dev libcurl4-openssl-dev libpq-dev libhiredis-dev
	libjansson-dev libssl-dev libmicrohttpd-dev libinih-dev check
	python3 # scripts/gen-man: the man pages are built with hookd
)
# Tests, demo and checks: local Postgres and Redis servers, promtool (from
# Debian's prometheus package: check_metrics runs `promtool check metrics`),
# PyYAML (scripts/check-packaging parses the compose and Kubernetes files), clang
# (libFuzzer for the fuzz smoke in scripts/test, scripts/fuzz).
dev_pkgs=(
	clang clang-format postgresql redis-server procps curl ca-certificates
	prometheus python3 python3-yaml
	lintian groff-base systemd # scripts/check-install: the .deb, the man pages, the unit
)
# The real-Kafka tests (scripts/kafka): a Java 17 runtime for the broker and its
# CLI tools, Maven to fetch Apache Kafka from Maven Central, kcat for the
# readiness probe, python3 to pick free ports.
kafka_pkgs=(openjdk-17-jre-headless maven kcat python3)

case "${HOOKD_DEPS:-all}" in
build) pkgs=("${build_pkgs[@]}") ;;
kafka) pkgs=("${kafka_pkgs[@]}") ;;
all) pkgs=("${build_pkgs[@]}" "${dev_pkgs[@]}" "${kafka_pkgs[@]}") ;;
*)
	echo "deps: HOOKD_DEPS must be build, kafka or all, got \"$HOOKD_DEPS\"" >&2
	exit 2
	;;
esac

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# Packages that ship a service (prometheus, postgresql, redis-server) would start
# it from their postinst. hookd's tests start their own servers on free ports;
# a system Prometheus on :9090 or a second Postgres is only in the way. A
# policy-rc.d that answers 101 tells invoke-rc.d and deb-systemd-invoke not to
# start anything; one that is already there (as in Docker images) is kept.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
fi
cleanup() { [ -n "$own_policy" ] && rm -f "$policy"; true; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Only promtool is wanted from the prometheus package: make sure its server is
# neither running nor (on a systemd host) started at the next boot.
if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	fi
	pidfile=/run/prometheus/prometheus.pid
	if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		echo "deps: stopping the Prometheus server the package started (pid $(cat "$pidfile"))" >&2
		kill "$(cat "$pidfile")" || true
	fi
fi
