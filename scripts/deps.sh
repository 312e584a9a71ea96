#!/usr/bin/env bash
# Installs every Debian package hookd needs to build, test and run the demo.
# Idempotent: asks apt only for what is missing. Keep in step with the Dockerfile.
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config clang-format
	librdkafka-dev libcurl4-openssl-dev libpq-dev libhiredis-dev
	libjansson-dev libssl-dev libmicrohttpd-dev libinih-dev check
	postgresql redis-server procps curl ca-certificates
)

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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
