# hookd: multi-stage build on Debian bookworm.
#   docker build -t hookd .
#   docker run --rm -e HOOKD_KAFKA_BROKERS=kafka:9092 -e HOOKD_SIGNING_SECRET=whsec_... hookd
# The build stage runs the same steps as scripts/deps.sh + scripts/build.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libcurl4-openssl-dev libpq-dev libhiredis-dev libjansson-dev \
      libssl-dev libmicrohttpd-dev libinih-dev check \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j"$(nproc)" --target hookd hookctl \
 && strip build/hookd build/hookctl

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libcurl4 libpq5 libhiredis0.14 libjansson4 libssl3 libmicrohttpd12 \
      libinih1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin hookd
COPY --from=build /src/build/hookd /src/build/hookctl /usr/local/bin/
COPY config/hookd.conf /etc/hookd/hookd.conf
USER hookd
# Every key can be overridden with HOOKD_<SECTION>_<KEY>; the admin endpoint
# (metrics, health) binds admin.listen.
ENV HOOKD_KAFKA_BROKERS=kafka:9092
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookd", "-c", "/etc/hookd/hookd.conf"]
