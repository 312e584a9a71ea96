# hookd: multi-stage build on Debian bookworm.
#   docker build -t hookd .
#   docker run --rm -e HOOKD_KAFKA_BROKERS=kafka:9092 -e HOOKD_ADMIN_TOKEN=... hookd
#
# The build stage runs the project's own two scripts, scripts/deps.sh (with
# HOOKD_DEPS=build: compilers and -dev packages only) and scripts/build, exactly
# as a developer does. The runtime stage holds only the shared libraries hookd
# links (scripts/check-packaging checks that list against `ldd build/hookd`),
# ca-certificates for https webhooks, and curl for the HEALTHCHECK.
#
# Configuration: /etc/hookd/hookd.conf (config/hookd.conf, all defaults) plus
# HOOKD_<SECTION>_<KEY> environment variables, which win over the file:
#   HOOKD_KAFKA_BROKERS   kafka:9092 (required: the file's default is "mock")
#   HOOKD_POSTGRES_URL    postgresql://hookd:...@postgres:5432/hookd (batches, DLQ records)
#   HOOKD_REDIS_URL       redis://redis:6379 (dedupe, shared limits; optional)
#   HOOKD_SIGNING_SECRET  whsec_... (Standard Webhooks signatures)
#   HOOKD_ADMIN_TOKEN     16-256 visible characters: REQUIRED by this image, see below
# In a container the admin server must listen on 0.0.0.0 so that Prometheus and
# the orchestrator's probes can reach it, and hookd refuses a non-loopback
# listener without a token: so this image sets HOOKD_ADMIN_LISTEN=0.0.0.0:9464
# and hookd exits at start with "admin.listen 0.0.0.0:9464 is not loopback: set
# admin.token" until HOOKD_ADMIN_TOKEN is given. /healthz needs no token;
# /metrics, /readyz and the /v1 API need "Authorization: Bearer <token>".

FROM debian:bookworm-slim AS build
WORKDIR /src
# deps.sh first, on its own layer: the package layer is reused until it changes.
COPY scripts/deps.sh scripts/deps.sh
RUN HOOKD_DEPS=build ./scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN HOOKD_DEPS=build ./scripts/build \
 && strip build/hookd build/hookctl

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libcurl4 libpq5 libhiredis0.14 libjansson4 libssl3 libmicrohttpd12 \
      libinih1 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hookd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin hookd
COPY --from=build /src/build/hookd /src/build/hookctl /usr/local/bin/
COPY config/hookd.conf /etc/hookd/hookd.conf
USER 10001:10001
ENV HOOKD_KAFKA_BROKERS=kafka:9092 \
    HOOKD_ADMIN_LISTEN=0.0.0.0:9464
EXPOSE 9464
# /healthz answers without a token: the process is alive and serving.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
# SIGTERM drains (stop intake, finish in-flight work within shutdown.grace_ms,
# commit, leave the group): give `docker stop -t` more than grace_ms (10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookd", "-c", "/etc/hookd/hookd.conf"]
